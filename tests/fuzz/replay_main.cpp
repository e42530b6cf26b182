// A main() for the fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput once on every file named on the
// command line or found (non-recursively) in a folder named there. ctest uses it to replay the seed corpora and
// every saved crash (tests/fuzz/regressions/) with any compiler, sanitized or not.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static bool run_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return false;
  }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
  return true;
}

int main(int argc, char** argv) {
  int files = 0;
  for (int i = 1; i < argc; ++i) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      std::fprintf(stderr, "no such file or folder: %s\n", argv[i]);
      return 2;
    }
    std::vector<std::string> paths;
    if (S_ISDIR(st.st_mode)) {
      DIR* d = opendir(argv[i]);
      for (dirent* e = d ? readdir(d) : nullptr; e != nullptr; e = readdir(d)) {
        if (e->d_name[0] != '.') paths.push_back(std::string(argv[i]) + "/" + e->d_name);
      }
      if (d) closedir(d);
      std::sort(paths.begin(), paths.end());
    } else {
      paths.push_back(argv[i]);
    }
    for (const auto& p : paths) {
      if (!run_file(p)) return 2;
      ++files;
    }
  }
  std::printf("replayed %d input(s)\n", files);
  return files > 0 ? 0 : 1;
}

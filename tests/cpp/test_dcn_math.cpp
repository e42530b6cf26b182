// Host test of csrc/ops/cuda/modulated_deform_conv_math.cuh (the math the CUDA kernels run), compiled
// with a plain C++ compiler: bilinear values and gradients against numbers from the Python operator,
// work-item decomposition and channel layout against explicit loops.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ops/cuda/modulated_deform_conv_math.cuh"

using namespace edvr_fast::dcn;

static int failures = 0;
#define CHECK(cond, ...)                  \
  do {                                    \
    if (!(cond)) {                        \
      ++failures;                         \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);           \
      std::printf("\n");                  \
    }                                     \
  } while (0)

static std::vector<double> make_plane(int H, int W) {
  std::vector<double> p(static_cast<size_t>(H) * W);
  for (int r = 0; r < H; ++r)
    for (int c = 0; c < W; ++c) p[static_cast<size_t>(r) * W + c] = std::sin(0.7 * r + 1.3 * c + 0.4) + 0.1 * r;
  return p;
}

static int check_cases(const char* path) {
  std::ifstream in(path);
  if (!in) {
    std::printf("FAIL cannot open %s (run from the repository root or pass the path)\n", path);
    return 1;
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    int H, W;
    double y, x, v, gy, gx;
    ss >> H >> W >> y >> x >> v >> gy >> gx;
    const std::vector<double> plane = make_plane(H, W);
    // The same path as the kernel: base position of tap 0 at output pixel (0, 0) with a 1x1 kernel.
    Geometry geo{1, H, W, H, W, 1, 1, 1, 1, 0, 0, 1, 1, 1};
    int by, bx;
    base_position(geo, 0, 0, 0, &by, &bx);
    const Corners<double> c = corners<double>(by, bx, y, x, H, W);
    const double val = interpolate<double>(plane.data(), c);
    double dy, dx;
    interpolate_grad<double>(plane.data(), c, &dy, &dx);
    CHECK(std::fabs(val - v) < 1e-12, "value H=%d W=%d y=%g x=%g: %.17g vs %.17g", H, W, y, x, val, v);
    CHECK(std::fabs(dy - gy) < 1e-12, "d/dy H=%d W=%d y=%g x=%g: %.17g vs %.17g", H, W, y, x, dy, gy);
    CHECK(std::fabs(dx - gx) < 1e-12, "d/dx H=%d W=%d y=%g x=%g: %.17g vs %.17g", H, W, y, x, dx, gx);
    for (int q = 0; q < 4; ++q) {
      CHECK(c.idx[q] >= -1 && c.idx[q] < static_cast<int64_t>(H) * W, "corner index %lld out of range",
            static_cast<long long>(c.idx[q]));
      CHECK(c.idx[q] >= 0 || c.w[q] == 0.0, "a corner outside the image must have weight 0");
    }
    ++n;
  }
  CHECK(n > 50, "expected more than 50 cases in %s, read %d", path, n);
  return 0;
}

static void check_decompose() {
  Geometry geo{12, 9, 7, 5, 4, 3, 2, 2, 1, 1, 0, 1, 2, 3};  // C=12, G=3, K=6, L=20
  int64_t flat = 0;
  for (int64_t n = 0; n < 2; ++n)
    for (int g = 0; g < geo.offset_groups; ++g)
      for (int k = 0; k < geo.K(); ++k)
        for (int ho = 0; ho < geo.Ho; ++ho)
          for (int wo = 0; wo < geo.Wo; ++wo, ++flat) {
            const Item it = decompose(flat, geo);
            CHECK(it.n == n && it.g == g && it.k == k && it.ho == ho && it.wo == wo, "decompose(%lld)",
                  static_cast<long long>(flat));
          }
  // Interleaved (dy, dx) pairs per (group, tap); mask one channel per (group, tap).
  CHECK(offset_channel(0, 0, 9) == 0 && offset_channel(0, 1, 9) == 2 && offset_channel(1, 0, 9) == 18,
        "offset channel layout");
  CHECK(mask_channel(1, 2, 9) == 11, "mask channel layout");
  int y, x;
  base_position(geo, 2, 3, 5, &y, &x);  // tap 5 of a 3x2 kernel: row 2, col 1
  CHECK(y == 2 * 2 - 1 + 2 * 1 && x == 3 * 1 - 0 + 1 * 2, "base position (%d, %d)", y, x);
}

static void check_rules() {
  const std::vector<double> plane = make_plane(4, 5);
  // Exactly on a pixel: its value, whatever the neighbours.
  Corners<double> c = corners<double>(2, 3, 0.0, 0.0, 4, 5);
  CHECK(std::fabs(interpolate<double>(plane.data(), c) - plane[2 * 5 + 3]) < 1e-15, "on-pixel value");
  // NaN and far outside sample zero and touch no memory.
  c = corners<double>(0, 0, NAN, 1.0, 4, 5);
  for (int q = 0; q < 4; ++q) CHECK(c.idx[q] == -1, "NaN must give no corners");
  c = corners<double>(0, 0, 1e30, 1.0, 4, 5);
  for (int q = 0; q < 4; ++q) CHECK(c.idx[q] == -1, "a huge offset must give no corners");
  c = corners<double>(0, 0, -1.0, 1.0, 4, 5);
  double gy, gx;
  interpolate_grad<double>(plane.data(), c, &gy, &gx);
  CHECK(interpolate<double>(plane.data(), c) == 0.0 && gy == 0.0 && gx == 0.0, "y == -1: zero and no gradient");
  // A large base with a small offset keeps the offset's fraction exactly (no rounding of base + offset).
  const Corners<float> cl = corners<float>(3000, 1, 0.123456789f, 0.5f, 4000, 5);
  CHECK(cl.ly == 0.123456789f, "fraction of a large coordinate: %.9g", static_cast<double>(cl.ly));
  // float instantiation agrees with double
  const Corners<float> cf = corners<float>(1, 2, 0.25f, 0.5f, 4, 5);
  const Corners<double> cd = corners<double>(1, 2, 0.25, 0.5, 4, 5);
  std::vector<float> pf(plane.begin(), plane.end());
  CHECK(std::fabs(interpolate<float>(pf.data(), cf) - interpolate<double>(plane.data(), cd)) < 1e-6, "float");
}

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "tests/cpp/dcn_math_cases.txt";
  failures += check_cases(path);
  check_decompose();
  check_rules();
  if (failures) {
    std::printf("dcn math: %d checks failed\n", failures);
    return 1;
  }
  std::printf("dcn math: all checks passed\n");
  return 0;
}

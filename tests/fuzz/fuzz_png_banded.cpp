// libFuzzer target: the banded-PNG band decoder (csrc/loader/png_banded.cpp) on arbitrary bytes and crops.
// Every rejected input must come back as an error string; ASan/UBSan catch any out-of-bounds read.
#include <cstdint>
#include <cstdlib>

#include "fuzz_input.h"
#include "loader/png_banded.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t* frame = data + fuzz::kParamBytes;
  const size_t frame_size = size < fuzz::kParamBytes ? 0 : size - fuzz::kParamBytes;
  fuzz::Geometry g;
  if (!fuzz::read_geometry(data, size, frame, frame_size, &g)) return 0;
  edvr_fast::loader::DecodedRegion region;
  bool banded = false;
  const std::string why = edvr_fast::loader::decode_banded_png(frame, static_cast<int64_t>(frame_size), g.H, g.W,
                                                               g.C, g.top, g.h, &region, &banded);
  if (banded && why.empty()) {
    // A success must cover the crop with a consistent buffer: the gather reads rows top..top+h-1 of it.
    if (region.top > g.top || region.top + region.rows < g.top + g.h || region.cols != g.W ||
        region.pixels.size() != static_cast<size_t>(region.rows) * region.cols * g.C) {
      std::abort();
    }
  }
  return 0;
}

// libFuzzer target: the PNG entry point of the fused loader (decode_png in csrc/loader/png_codec.cpp): banded
// files through the band decoder, any other PNG (the plain path) through libpng, then the crop of the result
// through run_decode_task exactly as the DecodePool runs it.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz_input.h"
#include "loader/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t* frame = data + fuzz::kParamBytes;
  const size_t frame_size = size < fuzz::kParamBytes ? 0 : size - fuzz::kParamBytes;
  fuzz::Geometry g;
  if (!fuzz::read_geometry(data, size, frame, frame_size, &g) || frame_size == 0) return 0;
  using namespace edvr_fast::loader;
  std::vector<float> out(static_cast<size_t>(g.C) * g.h * g.w);
  DecodeTask task;
  task.decode = decode_png;
  task.crop.src = frame, task.crop.src_bytes = static_cast<int64_t>(frame_size);
  task.crop.H = g.H, task.crop.W = g.W, task.crop.C = g.C;
  task.crop.top = g.top, task.crop.left = g.left, task.crop.h = g.h, task.crop.w = g.w;
  task.crop.hflip = data[0] & 2, task.crop.vflip = data[0] & 4, task.crop.transpose = false;
  task.crop.dst = out.data();
  if (!check_decode_task(task).empty()) std::abort();  // the geometry is valid by construction
  DecodedRegion scratch;
  (void)run_decode_task(task, OutType::kFloat32, &scratch);
  return 0;
}

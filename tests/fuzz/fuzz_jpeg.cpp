// libFuzzer target: the JPEG crop decoder of the fused loader (csrc/loader/jpeg_codec.cpp: iMCU-column crop,
// skipped rows, context margins), then the crop of the result through run_decode_task as the DecodePool runs
// it. Bit 3 of the mode byte picks the tight (no-context) variant.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz_input.h"
#include "loader/codec.h"

namespace {
std::string decode_tight(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h, int w,
                         edvr_fast::loader::DecodedRegion* out) {
  return edvr_fast::loader::decode_jpeg_region(data, size, H, W, C, top, left, h, w, out, false);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t* frame = data + fuzz::kParamBytes;
  const size_t frame_size = size < fuzz::kParamBytes ? 0 : size - fuzz::kParamBytes;
  fuzz::Geometry g;
  if (!fuzz::read_geometry(data, size, frame, frame_size, &g) || frame_size == 0) return 0;
  using namespace edvr_fast::loader;
  std::vector<float> out(static_cast<size_t>(g.C) * g.h * g.w);
  DecodeTask task;
  task.decode = (data[0] & 8) ? decode_tight : decode_jpeg;
  task.crop.src = frame, task.crop.src_bytes = static_cast<int64_t>(frame_size);
  task.crop.H = g.H, task.crop.W = g.W, task.crop.C = g.C;
  task.crop.top = g.top, task.crop.left = g.left, task.crop.h = g.h, task.crop.w = g.w;
  task.crop.hflip = data[0] & 2, task.crop.vflip = data[0] & 4, task.crop.transpose = data[0] & 16;
  task.crop.dst = out.data();
  if (!check_decode_task(task).empty()) std::abort();
  DecodedRegion scratch;
  (void)run_decode_task(task, OutType::kFloat32, &scratch);
  return 0;
}

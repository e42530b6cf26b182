// The fused loader's decode-and-crop pool (Torch-free, codec-free): each task carries an encoded frame and
// a crop; a decoder function (libjpeg-turbo / libpng ones live in *_codec.cpp) turns the bytes into only
// the rows/columns the crop needs, then the shared run_task() crops/flips/converts them into the batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loader/gather_core.h"

namespace edvr_fast {
namespace loader {

// A decoded window of a frame: `rows` x `cols` x C uint8 pixels (HWC, C-contiguous) whose first pixel is
// frame pixel (top, left). Decoders may return more than the crop (iMCU rounding, context margins).
struct DecodedRegion {
  std::vector<uint8_t> pixels;
  int rows = 0, cols = 0, top = 0, left = 0;
};

// Decodes the part of an encoded frame that covers crop (top, left, h, w) of an H x W x C frame into out.
// Returns an empty string on success, else why the bytes are not such a frame (never throws).
using DecodeFn = std::string (*)(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h,
                                 int w, DecodedRegion* out);

// One frame of a batch: the encoded bytes (crop.src / crop.src_bytes) and its crop into the batch tensor.
struct DecodeTask {
  CropTask crop;
  DecodeFn decode = nullptr;
};

// Decodes and runs one task (region buffer reused across calls by the caller). Empty string on success.
std::string run_decode_task(const DecodeTask& task, OutType out, DecodedRegion* scratch);

// Checks a task's geometry (not its bytes, which only the decoder can judge); empty when consistent.
std::string check_decode_task(const DecodeTask& task);

// The loader's BatchPool with decode tasks: they are decoded in the pool threads (one DecodedRegion per
// thread, reused) and may fail: wait() throws std::runtime_error("plan row <i>: <why>") for the lowest failed
// task of that batch.
struct DecodeTraits {
  using Task = DecodeTask;
  using Scratch = DecodedRegion;
  static std::string run(const DecodeTask& task, OutType out, DecodedRegion* scratch) {
    return run_decode_task(task, out, scratch);
  }
};

class DecodePool : public BatchPool<DecodeTraits> {
 public:
  explicit DecodePool(int num_threads) : BatchPool(num_threads, "decode") {}
};

}  // namespace loader
}  // namespace edvr_fast

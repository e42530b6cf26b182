// The fused loader's Torch-free core: crop + flip/transpose + BGR->RGB + HWC->CHW + /255 of uint8 frames
// into float32/bf16/fp16 planes, and the pool (batch_pool.h) that runs batches of such crops.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loader/batch_pool.h"

namespace edvr_fast {
namespace loader {

enum class OutType : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

// Bytes per output element.
int out_type_size(OutType t);

// float -> bf16 / fp16 bits, round to nearest even (what torch's .to(dtype) does); NaN stays NaN.
uint16_t float_to_bf16(float f);
uint16_t float_to_fp16(float f);

// One frame's crop: reads rows top..top+h-1 (columns left..left+w-1) of an H x W x C uint8 frame and
// writes a C x oh x ow plane stack (oh, ow = h, w, or w, h when transposed) of `out` type at dst.
struct CropTask {
  const uint8_t* src = nullptr;
  int64_t src_bytes = 0;  // length of the buffer behind src, checked against H*W*C
  int H = 0, W = 0, C = 0;
  int top = 0, left = 0, h = 0, w = 0;
  bool hflip = false, vflip = false, transpose = false;
  void* dst = nullptr;
};

// Empty when the task is consistent (buffer size, crop inside the frame, C in {1, 3}); else why not.
std::string check_task(const CropTask& task);

// check_task for a frame still to be decoded: the buffer will be H*W*C bytes, everything else is checked.
std::string check_geometry(const CropTask& task);

// Runs one (checked) task. Augmentation order as documented in FORMAT.md: hflip, vflip, transpose.
void run_task(const CropTask& task, OutType out);

// A fixed set of std::threads that runs batches of CropTasks (checked before submission, so they never fail):
// the loader's one BatchPool (batch_pool.h) with run_task as its task.
struct GatherTraits {
  using Task = CropTask;
  struct Scratch {};
  static std::string run(const CropTask& task, OutType out, Scratch*) {
    run_task(task, out);
    return {};
  }
};

class GatherPool : public BatchPool<GatherTraits> {
 public:
  explicit GatherPool(int num_threads) : BatchPool(num_threads, "gather") {}
};

}  // namespace loader
}  // namespace edvr_fast

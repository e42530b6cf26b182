// The fused loader's Torch-free core: crop + flip/transpose + BGR->RGB + HWC->CHW + /255 of uint8 frames
// into float32/bf16/fp16 planes, and the persistent thread pool that runs one batch of such crops.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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

// Runs one (checked) task. Augmentation order as documented in FORMAT.md: hflip, vflip, transpose.
void run_task(const CropTask& task, OutType out);

// A fixed set of std::threads that runs batches of CropTasks in submission order. submit() returns at
// once with a ticket; wait(ticket) blocks until that batch is written. Several batches may be queued.
// Fork: a child process has none of the parent's threads, so the destructor in another process than
// the creator's leaks the shared state instead of joining threads that do not exist there.
class GatherPool {
 public:
  explicit GatherPool(int num_threads);
  ~GatherPool();
  GatherPool(const GatherPool&) = delete;
  GatherPool& operator=(const GatherPool&) = delete;

  uint64_t submit(std::vector<CropTask> tasks, OutType out);
  void wait(uint64_t ticket);  // also fine for a ticket already waited on
  bool done(uint64_t ticket);
  int num_threads() const { return num_threads_; }

 private:
  struct Batch {
    uint64_t ticket = 0;
    std::vector<CropTask> tasks;
    OutType out = OutType::kFloat32;
    size_t next = 0;       // next task index to hand out (guarded by mu)
    size_t remaining = 0;  // tasks not finished yet (guarded by mu)
  };
  struct State {
    std::mutex mu;
    std::condition_variable work_cv, done_cv;
    std::deque<std::shared_ptr<Batch>> queue;
    uint64_t next_ticket = 1;
    uint64_t finished_below = 1;  // every ticket < this is finished (batches finish in order)
    std::vector<uint64_t> finished_out_of_order;
    bool stop = false;
    std::vector<std::thread> threads;
  };
  static void worker(State* s);
  bool finished_locked(uint64_t ticket) const;

  State* state_;
  int num_threads_;
  long owner_pid_;
};

}  // namespace loader
}  // namespace edvr_fast

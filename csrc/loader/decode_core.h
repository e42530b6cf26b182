// The fused loader's decode-and-crop pool (Torch-free, codec-free): each task carries an encoded frame and
// a crop; a decoder function (libjpeg-turbo / libpng ones live in *_codec.cpp) turns the bytes into only
// the rows/columns the crop needs, then the shared run_task() crops/flips/converts them into the batch.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
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

// Like GatherPool, but tasks are decoded in the pool threads and may fail: wait() throws
// std::runtime_error("plan row <i>: <why>") for the first failed task of that batch. Batches finish in
// any order; a ticket is forgotten once waited on. Fork: the destructor in a child process leaks.
class DecodePool {
 public:
  explicit DecodePool(int num_threads);
  ~DecodePool();
  DecodePool(const DecodePool&) = delete;
  DecodePool& operator=(const DecodePool&) = delete;

  uint64_t submit(std::vector<DecodeTask> tasks, OutType out);
  void wait(uint64_t ticket);  // throws the batch's error, once; a ticket already waited on returns at once
  bool done(uint64_t ticket);
  int num_threads() const { return num_threads_; }

 private:
  struct Batch {
    uint64_t ticket = 0;
    std::vector<DecodeTask> tasks;
    OutType out = OutType::kFloat32;
    size_t next = 0, remaining = 0;
    int64_t error_row = -1;  // lowest failed task index
    std::string error;
  };
  struct State {
    std::mutex mu;
    std::condition_variable work_cv, done_cv;
    std::deque<std::shared_ptr<Batch>> queue;
    std::map<uint64_t, std::shared_ptr<Batch>> open;  // submitted, not yet waited on
    uint64_t next_ticket = 1;
    bool stop = false;
    std::vector<std::thread> threads;
  };
  static void worker(State* s);

  State* state_;
  int num_threads_;
  long owner_pid_;
};

}  // namespace loader
}  // namespace edvr_fast

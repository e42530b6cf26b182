// The decode-and-crop pool: decoder function pointer + run_task, in persistent threads. No Torch, no codec
// library here (CMake's host tests build it with a fake decoder).
#include "loader/decode_core.h"

#include <unistd.h>

#include <stdexcept>

namespace edvr_fast {
namespace loader {

std::string check_decode_task(const DecodeTask& task) {
  if (task.decode == nullptr) return "no decoder";
  if (task.crop.src_bytes <= 0) return "empty encoded frame";
  CropTask geometry = task.crop;  // the decoded frame will have H*W*C bytes; check the rest now
  geometry.src_bytes = static_cast<int64_t>(geometry.H) * geometry.W * geometry.C;
  return check_task(geometry);
}

std::string run_decode_task(const DecodeTask& task, OutType out, DecodedRegion* r) {
  const CropTask& t = task.crop;
  std::string why = task.decode(t.src, t.src_bytes, t.H, t.W, t.C, t.top, t.left, t.h, t.w, r);
  if (!why.empty()) return why;
  if (r->top > t.top || r->left > t.left || r->top + r->rows < t.top + t.h || r->left + r->cols < t.left + t.w ||
      r->pixels.size() < static_cast<size_t>(r->rows) * r->cols * t.C) {
    return "decoder returned a region that does not cover the crop";  // a decoder bug, not bad data
  }
  CropTask sub = t;
  sub.src = r->pixels.data();
  sub.H = r->rows, sub.W = r->cols;
  sub.src_bytes = static_cast<int64_t>(r->rows) * r->cols * t.C;
  sub.top = t.top - r->top, sub.left = t.left - r->left;
  run_task(sub, out);
  return {};
}

DecodePool::DecodePool(int num_threads) : state_(new State), num_threads_(num_threads), owner_pid_(getpid()) {
  if (num_threads < 1) {
    delete state_;
    throw std::invalid_argument("DecodePool needs at least one thread");
  }
  for (int i = 0; i < num_threads; ++i) state_->threads.emplace_back(worker, state_);
}

DecodePool::~DecodePool() {
  if (getpid() != owner_pid_) return;  // forked child: no threads to join (see GatherPool)
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->work_cv.notify_all();
  for (auto& th : state_->threads) th.join();
  delete state_;
}

uint64_t DecodePool::submit(std::vector<DecodeTask> tasks, OutType out) {
  auto batch = std::make_shared<Batch>();
  batch->tasks = std::move(tasks);
  batch->out = out;
  batch->remaining = batch->tasks.size();
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    ticket = batch->ticket = state_->next_ticket++;
    state_->open[ticket] = batch;
    if (!batch->tasks.empty()) state_->queue.push_back(batch);
  }
  state_->work_cv.notify_all();
  return ticket;
}

bool DecodePool::done(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->open.find(ticket);
  return it == state_->open.end() || it->second->remaining == 0;
}

void DecodePool::wait(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(state_->mu);
  if (ticket == 0 || ticket >= state_->next_ticket) throw std::invalid_argument("unknown decode ticket");
  auto it = state_->open.find(ticket);
  if (it == state_->open.end()) return;
  std::shared_ptr<Batch> batch = it->second;
  state_->done_cv.wait(lock, [&] { return batch->remaining == 0; });
  state_->open.erase(ticket);
  if (batch->error_row >= 0) {
    throw std::runtime_error("plan row " + std::to_string(batch->error_row) + ": " + batch->error);
  }
}

void DecodePool::worker(State* s) {
  DecodedRegion region;  // reused: one allocation per thread once the largest region was seen
  std::unique_lock<std::mutex> lock(s->mu);
  while (true) {
    s->work_cv.wait(lock, [&] { return s->stop || !s->queue.empty(); });
    if (s->stop) return;
    std::shared_ptr<Batch> batch = s->queue.front();
    const size_t i = batch->next++;
    if (batch->next >= batch->tasks.size()) s->queue.pop_front();
    lock.unlock();
    std::string why;
    try {
      why = run_decode_task(batch->tasks[i], batch->out, &region);
    } catch (const std::exception& e) {  // std::bad_alloc and the like: report, never kill the thread
      why = e.what();
    }
    lock.lock();
    if (!why.empty() && (batch->error_row < 0 || static_cast<int64_t>(i) < batch->error_row)) {
      batch->error_row = static_cast<int64_t>(i);
      batch->error = why;
    }
    if (--batch->remaining == 0) s->done_cv.notify_all();
  }
}

}  // namespace loader
}  // namespace edvr_fast

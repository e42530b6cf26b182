// The one thread pool of the fused loader: persistent std::threads that run batches of tasks handed out one
// task at a time; GatherPool (raw crops) and DecodePool (decode + crop) are this pool with their task type.
#pragma once

#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace edvr_fast {
namespace loader {

enum class OutType : int;  // gather_core.h

// Runs batches of `Task`s through `Traits::run(const Task&, OutType, Traits::Scratch*)`, which returns an empty
// string on success or why the task failed (an exception it throws counts as a failure with e.what()). Each
// thread owns one Scratch, reused across tasks. submit() returns at once with a ticket; wait(ticket) blocks
// until that batch is written and throws std::runtime_error("plan row <i>: <why>") for its lowest failed task,
// once. A ticket is forgotten once waited on (waiting again returns at once; done() is then true). Batches
// may finish in any order. Fork: a child process has none of the parent's threads (and maybe a mutex locked
// by one of them), so the destructor in another process than the creator's leaks the shared state instead of
// joining threads that do not exist there.
template <typename Traits>
class BatchPool {
 public:
  using Task = typename Traits::Task;

  BatchPool(int num_threads, const char* name) : name_(name), num_threads_(num_threads), owner_pid_(getpid()) {
    if (num_threads < 1) throw std::invalid_argument(std::string(name) + " needs at least one thread");
    state_ = new State;
    for (int i = 0; i < num_threads; ++i) state_->threads.emplace_back(worker, state_);
  }

  ~BatchPool() {
    if (getpid() != owner_pid_) return;  // forked child: see the class comment
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->stop = true;
    }
    state_->work_cv.notify_all();
    for (auto& th : state_->threads) th.join();
    delete state_;
  }

  BatchPool(const BatchPool&) = delete;
  BatchPool& operator=(const BatchPool&) = delete;

  uint64_t submit(std::vector<Task> tasks, OutType out) {
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

  void wait(uint64_t ticket) {
    std::unique_lock<std::mutex> lock(state_->mu);
    if (ticket == 0 || ticket >= state_->next_ticket) throw std::invalid_argument("unknown " + name_ + " ticket");
    auto it = state_->open.find(ticket);
    if (it == state_->open.end()) return;
    std::shared_ptr<Batch> batch = it->second;
    state_->done_cv.wait(lock, [&] { return batch->remaining == 0; });
    state_->open.erase(ticket);
    if (batch->error_row >= 0) {
      throw std::runtime_error("plan row " + std::to_string(batch->error_row) + ": " + batch->error);
    }
  }

  bool done(uint64_t ticket) {
    std::lock_guard<std::mutex> lock(state_->mu);
    auto it = state_->open.find(ticket);
    return it == state_->open.end() || it->second->remaining == 0;
  }

  int num_threads() const { return num_threads_; }

 private:
  struct Batch {
    uint64_t ticket = 0;
    std::vector<Task> tasks;
    OutType out{};
    size_t next = 0, remaining = 0;  // next task to hand out, tasks not finished (guarded by mu)
    int64_t error_row = -1;          // lowest failed task index
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

  static void worker(State* s) {
    typename Traits::Scratch scratch{};
    std::unique_lock<std::mutex> lock(s->mu);
    while (true) {
      s->work_cv.wait(lock, [&] { return s->stop || !s->queue.empty(); });
      if (s->stop) return;
      std::shared_ptr<Batch> batch = s->queue.front();
      const size_t i = batch->next++;
      if (batch->next >= batch->tasks.size()) s->queue.pop_front();  // all handed out; others move on
      lock.unlock();
      std::string why;
      try {
        why = Traits::run(batch->tasks[i], batch->out, &scratch);
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

  State* state_ = nullptr;
  std::string name_;
  int num_threads_;
  long owner_pid_;
};

}  // namespace loader
}  // namespace edvr_fast

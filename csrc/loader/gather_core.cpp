// The fused loader's Torch-free core: crop/flip/transpose/colour/layout conversion of uint8 frames and the
// thread pool that runs a batch of them. Kept free of Torch and Python so CMake's host tests cover it.
#include "loader/gather_core.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>

namespace edvr_fast {
namespace loader {

int out_type_size(OutType t) { return t == OutType::kFloat32 ? 4 : 2; }

uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  // Round to nearest even: add 0x7fff plus the lowest kept bit, then truncate.
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

uint16_t float_to_fp16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (absu >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (absu < 0x38800000u) {
    // Subnormal half (|f| < 2^-14): shift the 24-bit significand into place, rounding to nearest even.
    if (absu < 0x33000000u) return static_cast<uint16_t>(sign);  // below half the smallest subnormal
    const int exp = static_cast<int>(absu >> 23);
    const uint32_t mant = (absu & 0x7fffffu) | 0x800000u;
    const int shift = 126 - exp;  // value = mant * 2^(exp - 150); in units of 2^-24: mant >> (126 - exp)
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10 bits, nearest even.
  uint32_t v = absu - (112u << 23);
  v += 0xfffu + ((v >> 13) & 1u);
  return static_cast<uint16_t>(sign | (v >> 13));
}

std::string check_task(const CropTask& t) {
  if (t.src == nullptr || t.dst == nullptr) return "null source or destination";
  if (t.C != 1 && t.C != 3) return "frames must have 1 or 3 channels, got " + std::to_string(t.C);
  if (t.H <= 0 || t.W <= 0) return "frame size must be positive";
  const int64_t need = static_cast<int64_t>(t.H) * t.W * t.C;
  if (t.src_bytes != need) {
    return "frame buffer has " + std::to_string(t.src_bytes) + " bytes, expected " + std::to_string(t.H) + "x" +
           std::to_string(t.W) + "x" + std::to_string(t.C) + " = " + std::to_string(need);
  }
  if (t.h <= 0 || t.w <= 0 || t.top < 0 || t.left < 0 || t.top + t.h > t.H || t.left + t.w > t.W) {
    return "crop top=" + std::to_string(t.top) + " left=" + std::to_string(t.left) + " " + std::to_string(t.h) +
           "x" + std::to_string(t.w) + " is outside the " + std::to_string(t.H) + "x" + std::to_string(t.W) +
           " frame";
  }
  return {};
}

namespace {

// x / 255 for every uint8 value, as float32 division (bit-identical to torch's div_(255.0) on float32),
// then in the requested output format; one table per type, built once.
template <typename T>
const std::array<T, 256>& value_table(OutType out) {
  static const std::array<T, 256> tables[3] = {
      [] {
        std::array<T, 256> a{};
        for (int v = 0; v < 256; ++v) {
          const float f = static_cast<float>(v) / 255.0f;
          std::memcpy(&a[v], &f, sizeof(T) < 4 ? sizeof(T) : 4);
        }
        return a;
      }(),
      [] {
        std::array<T, 256> a{};
        for (int v = 0; v < 256; ++v) a[v] = static_cast<T>(float_to_bf16(static_cast<float>(v) / 255.0f));
        return a;
      }(),
      [] {
        std::array<T, 256> a{};
        for (int v = 0; v < 256; ++v) a[v] = static_cast<T>(float_to_fp16(static_cast<float>(v) / 255.0f));
        return a;
      }(),
  };
  return tables[static_cast<int>(out)];
}

// Output pixel (y, x) reads source byte offset ybase[y] + xoff[x] (+ channel). With flips hf/vf applied to
// the crop A[r][k] = S[top + vf(r)][left + hf(k)], the transposed output is T[y][x] = A[x][y], so both
// cases are a sum of a per-row and a per-column offset; the transposed reads walk down a column, which
// stays within L1 for a 256-wide crop (one cache line per source row).
template <typename T, int C>
void convert(const CropTask& t, const T* lut) {
  const int oh = t.transpose ? t.w : t.h;
  const int ow = t.transpose ? t.h : t.w;
  const int64_t row = static_cast<int64_t>(t.W) * C;
  std::vector<int64_t> ybase(oh), xoff(ow);
  auto vrow = [&](int r) { return static_cast<int64_t>(t.top + (t.vflip ? t.h - 1 - r : r)) * row; };
  auto hcol = [&](int k) { return static_cast<int64_t>(t.left + (t.hflip ? t.w - 1 - k : k)) * C; };
  for (int y = 0; y < oh; ++y) ybase[y] = t.transpose ? hcol(y) : vrow(y);
  for (int x = 0; x < ow; ++x) xoff[x] = t.transpose ? vrow(x) : hcol(x);
  const int64_t plane = static_cast<int64_t>(oh) * ow;
  T* out = static_cast<T*>(t.dst);
  const int64_t* xo = xoff.data();
  for (int y = 0; y < oh; ++y) {
    const uint8_t* base = t.src + ybase[y];
    if (C == 3) {
      // BGR in, RGB planes out: plane 0 takes byte 2.
      T* r = out + static_cast<int64_t>(y) * ow;
      T* g = r + plane;
      T* b = g + plane;
      if (!t.transpose && !t.hflip) {
        const uint8_t* p = base + xo[0];  // contiguous pixels: let the compiler see unit stride
        for (int x = 0; x < ow; ++x, p += 3) {
          r[x] = lut[p[2]];
          g[x] = lut[p[1]];
          b[x] = lut[p[0]];
        }
      } else {
        for (int x = 0; x < ow; ++x) {
          const uint8_t* p = base + xo[x];
          r[x] = lut[p[2]];
          g[x] = lut[p[1]];
          b[x] = lut[p[0]];
        }
      }
    } else {
      T* o = out + static_cast<int64_t>(y) * ow;
      for (int x = 0; x < ow; ++x) o[x] = lut[base[xo[x]]];
    }
  }
}

template <typename T>
void dispatch_channels(const CropTask& t, OutType out) {
  const T* lut = value_table<T>(out).data();
  if (t.C == 3) {
    convert<T, 3>(t, lut);
  } else {
    convert<T, 1>(t, lut);
  }
}

}  // namespace

void run_task(const CropTask& task, OutType out) {
  if (out == OutType::kFloat32) {
    dispatch_channels<float>(task, out);
  } else {
    dispatch_channels<uint16_t>(task, out);
  }
}

GatherPool::GatherPool(int num_threads) : state_(new State), num_threads_(num_threads), owner_pid_(getpid()) {
  if (num_threads < 1) {
    delete state_;
    throw std::invalid_argument("GatherPool needs at least one thread");
  }
  for (int i = 0; i < num_threads; ++i) state_->threads.emplace_back(worker, state_);
}

GatherPool::~GatherPool() {
  if (getpid() != owner_pid_) {
    // A forked child inherited this object's memory but not its threads (and maybe a mutex locked by
    // one of them): joining would hang, so the state is deliberately leaked in the child.
    return;
  }
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->work_cv.notify_all();
  for (auto& th : state_->threads) th.join();
  delete state_;
}

uint64_t GatherPool::submit(std::vector<CropTask> tasks, OutType out) {
  auto batch = std::make_shared<Batch>();
  batch->tasks = std::move(tasks);
  batch->out = out;
  batch->remaining = batch->tasks.size();
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    ticket = batch->ticket = state_->next_ticket++;
    if (batch->tasks.empty()) {
      state_->finished_out_of_order.push_back(ticket);
    } else {
      state_->queue.push_back(batch);
    }
  }
  if (batch->tasks.empty()) {
    std::lock_guard<std::mutex> lock(state_->mu);
    // An empty batch finishes at once; fold it into finished_below when it is next in line.
    auto& f = state_->finished_out_of_order;
    while (true) {
      auto it = std::find(f.begin(), f.end(), state_->finished_below);
      if (it == f.end()) break;
      f.erase(it);
      ++state_->finished_below;
    }
  } else {
    state_->work_cv.notify_all();
  }
  return ticket;
}

bool GatherPool::finished_locked(uint64_t ticket) const {
  if (ticket < state_->finished_below) return true;
  const auto& f = state_->finished_out_of_order;
  return std::find(f.begin(), f.end(), ticket) != f.end();
}

bool GatherPool::done(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(state_->mu);
  return finished_locked(ticket);
}

void GatherPool::wait(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(state_->mu);
  if (ticket == 0 || ticket >= state_->next_ticket) throw std::invalid_argument("unknown gather ticket");
  state_->done_cv.wait(lock, [&] { return finished_locked(ticket); });
}

void GatherPool::worker(State* s) {
  std::unique_lock<std::mutex> lock(s->mu);
  while (true) {
    s->work_cv.wait(lock, [&] { return s->stop || !s->queue.empty(); });
    if (s->stop) return;
    std::shared_ptr<Batch> batch = s->queue.front();
    const size_t i = batch->next++;
    if (batch->next >= batch->tasks.size()) s->queue.pop_front();  // all handed out; others move on
    lock.unlock();
    run_task(batch->tasks[i], batch->out);  // tasks were checked at submission
    lock.lock();
    if (--batch->remaining == 0) {
      s->finished_out_of_order.push_back(batch->ticket);
      auto& f = s->finished_out_of_order;
      while (true) {
        auto it = std::find(f.begin(), f.end(), s->finished_below);
        if (it == f.end()) break;
        f.erase(it);
        ++s->finished_below;
      }
      s->done_cv.notify_all();
    }
  }
}

}  // namespace loader
}  // namespace edvr_fast

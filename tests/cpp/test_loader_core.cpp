// Host tests of the fused loader's core (no Torch): every flip/transpose combination against a plain
// per-pixel reference, gray frames, bf16/fp16 rounding, size checks, and the pool's tickets and threads.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "loader/gather_core.h"
#include "expect.h"

using edvr_fast::loader::CropTask;
using edvr_fast::loader::GatherPool;
using edvr_fast::loader::OutType;

static std::vector<uint8_t> make_frame(int H, int W, int C, int seed) {
  std::vector<uint8_t> f(static_cast<size_t>(H) * W * C);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<uint8_t>((i * 131 + seed * 17 + (i >> 7)) & 255);
  return f;
}

// The documented semantics written the slow obvious way: crop, hflip, vflip, transpose, BGR->RGB, CHW.
static float reference(const std::vector<uint8_t>& f, const CropTask& t, int c, int y, int x) {
  int r = t.transpose ? x : y;  // row/col in the flipped crop
  int k = t.transpose ? y : x;
  if (t.vflip) r = t.h - 1 - r;
  if (t.hflip) k = t.w - 1 - k;
  const int ch = t.C == 3 ? 2 - c : c;
  return static_cast<float>(f[(static_cast<size_t>(t.top + r) * t.W + t.left + k) * t.C + ch]) / 255.0f;
}

static void test_all_flips(int C) {
  const int H = 23, W = 37, h = 9, w = 14;
  auto frame = make_frame(H, W, C, C);
  for (int flags = 0; flags < 8; ++flags) {
    CropTask t;
    t.src = frame.data();
    t.src_bytes = static_cast<int64_t>(frame.size());
    t.H = H, t.W = W, t.C = C, t.top = 5, t.left = 11, t.h = h, t.w = w;
    t.hflip = flags & 1, t.vflip = flags & 2, t.transpose = flags & 4;
    const int oh = t.transpose ? w : h, ow = t.transpose ? h : w;
    std::vector<float> out(static_cast<size_t>(C) * oh * ow, -1.0f);
    t.dst = out.data();
    EXPECT(edvr_fast::loader::check_task(t).empty());
    edvr_fast::loader::run_task(t, OutType::kFloat32);
    int bad = 0;
    for (int c = 0; c < C; ++c)
      for (int y = 0; y < oh; ++y)
        for (int x = 0; x < ow; ++x)
          bad += out[(static_cast<size_t>(c) * oh + y) * ow + x] != reference(frame, t, c, y, x);
    EXPECT(bad == 0);
    // Half types: the same values, each cast with round-to-nearest-even.
    for (OutType ot : {OutType::kBFloat16, OutType::kFloat16}) {
      std::vector<uint16_t> half(out.size(), 0);
      t.dst = half.data();
      edvr_fast::loader::run_task(t, ot);
      int bad_half = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        const uint16_t want = ot == OutType::kBFloat16 ? edvr_fast::loader::float_to_bf16(out[i])
                                                       : edvr_fast::loader::float_to_fp16(out[i]);
        bad_half += half[i] != want;
      }
      EXPECT(bad_half == 0);
    }
  }
}

static float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

static void test_rounding() {
  using edvr_fast::loader::float_to_bf16;
  using edvr_fast::loader::float_to_fp16;
  EXPECT(float_to_bf16(1.0f) == 0x3f80);
  EXPECT(float_to_bf16(bf16_to_float(0x3f80) + std::ldexp(1.0f, -8)) == 0x3f80);  // tie -> even (down)
  EXPECT(float_to_bf16(bf16_to_float(0x3f81) + std::ldexp(1.0f, -8)) == 0x3f82);  // tie -> even (up)
  EXPECT(float_to_bf16(-2.0f) == 0xc000);
  EXPECT(float_to_fp16(1.0f) == 0x3c00);
  EXPECT(float_to_fp16(0.0f) == 0x0000);
  EXPECT(float_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie -> even (down)
  EXPECT(float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie -> even (up)
  EXPECT(float_to_fp16(65504.0f) == 0x7bff);
  EXPECT(float_to_fp16(65520.0f) == 0x7c00);
  EXPECT(float_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);  // smallest subnormal
  EXPECT(float_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);  // tie with zero -> even
  EXPECT(float_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 units -> 2
  EXPECT(float_to_fp16(std::ldexp(1.0f, -14)) == 0x0400);  // smallest normal
  EXPECT(float_to_fp16(-0.5f) == 0xb800);
  EXPECT(float_to_fp16(1.0f / 255.0f) == 0x1c04);  // 0.0039216 in half
}

static void test_checks() {
  auto frame = make_frame(4, 5, 3, 0);
  float dst[64];
  CropTask t;
  t.src = frame.data(), t.dst = dst, t.H = 4, t.W = 5, t.C = 3, t.h = 2, t.w = 2;
  t.src_bytes = static_cast<int64_t>(frame.size()) - 1;  // truncated value
  EXPECT(edvr_fast::loader::check_task(t).find("bytes") != std::string::npos);
  t.src_bytes = static_cast<int64_t>(frame.size());
  EXPECT(edvr_fast::loader::check_task(t).empty());
  t.top = 3;
  EXPECT(edvr_fast::loader::check_task(t).find("outside") != std::string::npos);
  t.top = 0, t.C = 2;
  EXPECT(!edvr_fast::loader::check_task(t).empty());
}

static void test_pool() {
  const int H = 64, W = 80, n = 40;
  auto frame = make_frame(H, W, 3, 7);
  GatherPool pool(2);
  std::vector<std::vector<float>> outs(3, std::vector<float>(static_cast<size_t>(n) * 3 * 32 * 32, 0.0f));
  std::vector<uint64_t> tickets;
  for (int b = 0; b < 3; ++b) {
    std::vector<CropTask> tasks;
    for (int i = 0; i < n; ++i) {
      CropTask t;
      t.src = frame.data(), t.src_bytes = static_cast<int64_t>(frame.size());
      t.H = H, t.W = W, t.C = 3, t.top = i % 30, t.left = (i * 3) % 40, t.h = 32, t.w = 32;
      t.hflip = (i + b) & 1, t.transpose = i & 2;
      t.dst = outs[b].data() + static_cast<size_t>(i) * 3 * 32 * 32;
      tasks.push_back(t);
    }
    tickets.push_back(pool.submit(tasks, OutType::kFloat32));
  }
  EXPECT(tickets[0] < tickets[1] && tickets[1] < tickets[2]);
  // Tickets may be waited for in any order; a later batch finishing says nothing about an earlier
  // one still being written by another thread, so each is waited for before its output is read.
  pool.wait(tickets[2]);
  pool.wait(tickets[0]);
  pool.wait(tickets[1]);
  EXPECT(pool.done(tickets[0]) && pool.done(tickets[1]) && pool.done(tickets[2]));
  const uint64_t empty = pool.submit({}, OutType::kFloat32);
  pool.wait(empty);
  for (int b = 0; b < 3; ++b) {
    int bad = 0;
    for (int i = 0; i < n; ++i) {
      CropTask t;
      t.H = H, t.W = W, t.C = 3, t.top = i % 30, t.left = (i * 3) % 40, t.h = 32, t.w = 32;
      t.hflip = (i + b) & 1, t.transpose = i & 2;
      const float* o = outs[b].data() + static_cast<size_t>(i) * 3 * 32 * 32;
      for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 32; ++y)
          for (int x = 0; x < 32; ++x) bad += o[(c * 32 + y) * 32 + x] != reference(frame, t, c, y, x);
    }
    EXPECT(bad == 0);
  }
  bool threw = false;
  try {
    pool.wait(9999);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  EXPECT(threw);
}

int main() {
  test_all_flips(3);
  test_all_flips(1);
  test_rounding();
  test_checks();
  test_pool();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("loader core: all checks passed\n");
  return 0;
}

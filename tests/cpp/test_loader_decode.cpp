// Host tests of the decode-and-crop pool (no Torch, no codec library): a fake decoder that "decodes" a
// raw frame into a region around the crop; results must equal the plain GatherPool path, errors must name
// the lowest failing plan row, and a batch with errors must not stop the pool.
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "loader/decode_core.h"
#include "expect.h"

using edvr_fast::loader::CropTask;
using edvr_fast::loader::DecodedRegion;
using edvr_fast::loader::DecodePool;
using edvr_fast::loader::DecodeTask;
using edvr_fast::loader::OutType;

// "Encoded" frame = raw HWC bytes; the region returned is the crop grown by 3 pixels (clamped), like a
// decoder that rounds out to blocks. A first byte of 0xEE means a damaged frame.
static std::string fake_decode(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h,
                               int w, DecodedRegion* out) {
  if (size != static_cast<int64_t>(H) * W * C) return "wrong size";
  if (data[0] == 0xEE) return "damaged frame";
  const int y0 = top > 3 ? top - 3 : 0, x0 = left > 3 ? left - 3 : 0;
  const int y1 = top + h + 3 < H ? top + h + 3 : H, x1 = left + w + 3 < W ? left + w + 3 : W;
  out->rows = y1 - y0, out->cols = x1 - x0, out->top = y0, out->left = x0;
  out->pixels.resize(static_cast<size_t>(out->rows) * out->cols * C);
  for (int y = 0; y < out->rows; ++y) {
    std::memcpy(&out->pixels[static_cast<size_t>(y) * out->cols * C],
                data + (static_cast<size_t>(y0 + y) * W + x0) * C, static_cast<size_t>(out->cols) * C);
  }
  return {};
}

static std::vector<uint8_t> make_frame(int H, int W, int C, int seed) {
  std::vector<uint8_t> f(static_cast<size_t>(H) * W * C);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<uint8_t>((i * 37 + seed * 11 + (i >> 5)) & 255);
  f[0] = 1;
  return f;
}

int main() {
  const int H = 23, W = 31;
  std::vector<std::vector<uint8_t>> frames;
  for (int k = 0; k < 12; ++k) frames.push_back(make_frame(H, W, k % 2 ? 1 : 3, k));
  DecodePool pool(3);
  for (int flags = 0; flags < 8; ++flags) {
    std::vector<DecodeTask> tasks;
    std::vector<std::vector<float>> got(frames.size()), want(frames.size());
    for (size_t k = 0; k < frames.size(); ++k) {
      const int C = k % 2 ? 1 : 3;
      CropTask t;
      t.src = frames[k].data(), t.src_bytes = static_cast<int64_t>(frames[k].size());
      t.H = H, t.W = W, t.C = C;
      t.top = static_cast<int>(k * 2) % 10, t.left = static_cast<int>(k * 3) % 15, t.h = 9, t.w = 9;
      if (k == 3) t.top = 0, t.left = 0, t.h = H, t.w = W;  // whole frame, no margin available
      if (k == 4) t.top = H - 9, t.left = W - 9;               // bottom-right corner
      t.hflip = flags & 1, t.vflip = flags & 2, t.transpose = flags & 4;
      got[k].assign(static_cast<size_t>(C) * t.h * t.w, -1.f);
      want[k].assign(got[k].size(), -2.f);
      CropTask plain = t;
      plain.dst = want[k].data();
      edvr_fast::loader::run_task(plain, OutType::kFloat32);
      t.dst = got[k].data();
      DecodeTask d;
      d.crop = t, d.decode = fake_decode;
      EXPECT(edvr_fast::loader::check_decode_task(d).empty());
      tasks.push_back(d);
    }
    const uint64_t ticket = pool.submit(tasks, OutType::kFloat32);
    pool.wait(ticket);
    EXPECT(pool.done(ticket));
    for (size_t k = 0; k < frames.size(); ++k) EXPECT(got[k] == want[k]);
  }
  // Errors: the lowest failing row is reported, once; the pool keeps working afterwards.
  std::vector<uint8_t> bad = make_frame(H, W, 3, 99);
  bad[0] = 0xEE;
  std::vector<float> sink(3 * 5 * 5);
  std::vector<DecodeTask> tasks;
  for (int k = 0; k < 6; ++k) {
    DecodeTask d;
    d.decode = fake_decode;
    d.crop.src = (k == 2 || k == 4) ? bad.data() : frames[0].data();
    d.crop.src_bytes = static_cast<int64_t>(bad.size());
    d.crop.H = H, d.crop.W = W, d.crop.C = 3, d.crop.h = 5, d.crop.w = 5, d.crop.dst = sink.data();
    tasks.push_back(d);
  }
  const uint64_t t1 = pool.submit(tasks, OutType::kFloat32);
  const uint64_t t2 = pool.submit({tasks[0], tasks[1]}, OutType::kBFloat16);
  std::string msg;
  try {
    pool.wait(t1);
  } catch (const std::runtime_error& e) {
    msg = e.what();
  }
  EXPECT(msg == "plan row 2: damaged frame");
  pool.wait(t1);  // already reported: returns quietly
  pool.wait(t2);
  EXPECT(pool.submit({}, OutType::kFloat32) > t2);
  bool threw = false;
  try {
    pool.wait(12345);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  EXPECT(threw);
  DecodeTask outside = tasks[0];
  outside.crop.top = H - 2;
  EXPECT(!edvr_fast::loader::check_decode_task(outside).empty());
  if (failures == 0) std::printf("test_loader_decode: all passed\n");
  return failures == 0 ? 0 : 1;
}

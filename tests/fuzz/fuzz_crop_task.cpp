// libFuzzer target: crop-task validation of the gather (check_task / check_decode_task in
// csrc/loader/gather_core.h and decode_core.h). Arbitrary geometry, flags and buffer length; every task the
// check accepts is run (run_task) on a source buffer of exactly src_bytes and a destination of exactly the
// crop's size, so ASan flags any accepted task that would read or write outside them.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "loader/decode_core.h"

namespace {
int32_t take_i32(const uint8_t*& p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  p += 4;
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 34) return 0;
  using namespace edvr_fast::loader;
  const uint8_t* p = data;
  CropTask t;
  t.H = take_i32(p), t.W = take_i32(p), t.C = take_i32(p);
  t.top = take_i32(p), t.left = take_i32(p), t.h = take_i32(p), t.w = take_i32(p);
  const int32_t delta = take_i32(p);  // src_bytes = H*W*C + delta (wrapping like an int64 would)
  const uint8_t flags = *p++;
  const uint8_t out_sel = *p++;
  t.hflip = flags & 1, t.vflip = flags & 2, t.transpose = flags & 4;
  const OutType out = static_cast<OutType>(out_sel % 3);
  const uint64_t product = static_cast<uint64_t>(static_cast<int64_t>(t.H)) * static_cast<uint64_t>(
                               static_cast<int64_t>(t.W)) * static_cast<uint64_t>(static_cast<int64_t>(t.C));
  t.src_bytes = static_cast<int64_t>(product + static_cast<uint64_t>(static_cast<int64_t>(delta)));
  if (flags & 8) t.src_bytes = delta;  // also arbitrary lengths unrelated to the geometry
  static uint8_t sentinel;
  t.src = &sentinel, t.dst = &sentinel;
  const std::string why = check_task(t);
  DecodeTask d;
  d.crop = t, d.decode = [](const uint8_t*, int64_t, int, int, int, int, int, int, int, DecodedRegion*) {
    return std::string("unused");
  };
  (void)check_decode_task(d);  // must not crash or overflow on any geometry
  if (!why.empty()) return 0;
  if (t.src_bytes > (1 << 22)) return 0;  // accepted but too large to run quickly here
  std::vector<uint8_t> src(static_cast<size_t>(t.src_bytes));
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 31);
  const size_t elems = static_cast<size_t>(t.C) * t.h * t.w;
  std::vector<uint8_t> dst(elems * out_type_size(out));
  t.src = src.data(), t.dst = dst.data();
  run_task(t, out);
  return 0;
}

// The fused loader's Torch-free core: crop/flip/transpose/colour/layout conversion of uint8 frames (the pool
// that runs batches of them is batch_pool.h). Kept free of Torch and Python so CMake's host tests cover it.
#include "loader/gather_core.h"

#include <algorithm>
#include <array>
#include <cstring>

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

namespace {
uint64_t frame_bytes(int H, int W, int C) {  // callers ensure H, W > 0 and C in {1, 3}
  return static_cast<uint64_t>(H) * static_cast<uint64_t>(W) * static_cast<uint64_t>(C);
}
}  // namespace

std::string check_task(const CropTask& t) {
  if (t.src == nullptr || t.dst == nullptr) return "null source or destination";
  if (t.C != 1 && t.C != 3) return "frames must have 1 or 3 channels, got " + std::to_string(t.C);
  if (t.H <= 0 || t.W <= 0) return "frame size must be positive";
  // In uint64: H*W*C of two positive ints and C <= 3 stays below 2^64 (int64 overflowed: found by fuzz_crop_task).
  const uint64_t need = frame_bytes(t.H, t.W, t.C);
  if (t.src_bytes < 0 || static_cast<uint64_t>(t.src_bytes) != need) {
    return "frame buffer has " + std::to_string(t.src_bytes) + " bytes, expected " + std::to_string(t.H) + "x" +
           std::to_string(t.W) + "x" + std::to_string(t.C) + " = " + std::to_string(need);
  }
  // int64 sums: top + h of two large ints must not overflow (UB) into a value that passes the check.
  if (t.h <= 0 || t.w <= 0 || t.top < 0 || t.left < 0 || int64_t{t.top} + t.h > t.H ||
      int64_t{t.left} + t.w > t.W) {
    return "crop top=" + std::to_string(t.top) + " left=" + std::to_string(t.left) + " " + std::to_string(t.h) +
           "x" + std::to_string(t.w) + " is outside the " + std::to_string(t.H) + "x" + std::to_string(t.W) +
           " frame";
  }
  return {};
}

std::string check_geometry(const CropTask& t) {
  CropTask g = t;
  // H*W*C only once C and the sides are known sane (else check_task says why before it multiplies).
  if ((g.C == 1 || g.C == 3) && g.H > 0 && g.W > 0) {
    const uint64_t need = frame_bytes(g.H, g.W, g.C);
    // A frame too large for int64 bytes can never be allocated: -1 makes check_task refuse it by its size.
    g.src_bytes = need <= static_cast<uint64_t>(INT64_MAX) ? static_cast<int64_t>(need) : -1;
  }
  return check_task(g);
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

}  // namespace loader
}  // namespace edvr_fast

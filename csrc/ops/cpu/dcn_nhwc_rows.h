// Channel-row bodies of the NHWC (channels-last) CPU kernel: for one (pixel, tap, offset group), the
// bilinear sample of a run of contiguous channels, and its backward. No Torch types (host-testable).
// Loops run over 8 independent lanes so that the compiler vectorises them without reassociating sums:
// results are the same on every run and every machine with the same instruction set.
#pragma once

#include <cstdint>

#include "ops/cuda/modulated_deform_conv_math.cuh"

namespace edvr_fast {
namespace dcn {
namespace nhwc {

constexpr int kLanes = 8;

// One sample point of one (pixel, tap, offset group): the valid corners as offsets of pixels
// (y*W + x, multiply by the pixel stride), their bilinear weights and those of d/dy, d/dx.
template <typename acc_t>
struct Sample {
  int nv = 0;        // number of valid corners
  int64_t pix[4];    // pixel index of valid corner q < nv
  acc_t w[4];        // bilinear weight (not multiplied by the mask)
  acc_t wy[4];       // d(weight)/dy
  acc_t wx[4];       // d(weight)/dx
};

template <typename acc_t>
inline Sample<acc_t> make_sample(int by, int bx, acc_t dy, acc_t dx, int H, int W) {
  const Corners<acc_t> c = corners<acc_t>(by, bx, dy, dx, H, W);
  const acc_t hy = acc_t(1) - c.ly, hx = acc_t(1) - c.lx;
  const acc_t wy[4] = {-hx, -c.lx, hx, c.lx};
  const acc_t wx[4] = {-hy, hy, -c.ly, c.ly};
  Sample<acc_t> s;
  for (int q = 0; q < 4; ++q) {
    if (c.idx[q] < 0) continue;
    s.pix[s.nv] = c.idx[q];
    s.w[s.nv] = c.w[q];
    s.wy[s.nv] = wy[q];
    s.wx[s.nv] = wx[q];
    ++s.nv;
  }
  return s;
}

// out[c] = m * sum_q w[q] * src[q][c] for c < n (src[q] already points at channel 0 of the run).
template <typename scalar_t, typename acc_t>
inline void gather_row(scalar_t* __restrict out, const scalar_t* const* src, const Sample<acc_t>& s, acc_t m,
                       int n) {
  if (s.nv == 4) {
    const acc_t w0 = m * s.w[0], w1 = m * s.w[1], w2 = m * s.w[2], w3 = m * s.w[3];
    const scalar_t* __restrict a = src[0];
    const scalar_t* __restrict b = src[1];
    const scalar_t* __restrict c = src[2];
    const scalar_t* __restrict d = src[3];
    for (int i = 0; i < n; ++i) {
      out[i] = static_cast<scalar_t>(w0 * acc_t(a[i]) + w1 * acc_t(b[i]) + w2 * acc_t(c[i]) + w3 * acc_t(d[i]));
    }
    return;
  }
  for (int i = 0; i < n; ++i) {
    acc_t v = acc_t(0);
    for (int q = 0; q < s.nv; ++q) v += m * s.w[q] * acc_t(src[q][i]);
    out[i] = static_cast<scalar_t>(v);
  }
}

// Backward of gather_row for the column gradient gc[c]: adds m * w[q] * gc[c] to gin[q][c] and returns
// in sums[0..2] sum_c gc*value, sum_c gc*dvalue/dy, sum_c gc*dvalue/dx (unmasked), each summed over
// kLanes fixed lanes, then the lanes in order.
template <typename scalar_t, typename acc_t, typename gin_t>
inline void backward_row(const scalar_t* __restrict gc, const scalar_t* const* src, gin_t* const* gin,
                         const Sample<acc_t>& s, acc_t m, int n, acc_t* sums) {
  acc_t sv[kLanes] = {}, sy[kLanes] = {}, sx[kLanes] = {};
  if (s.nv == 4) {
    const scalar_t* __restrict a = src[0];
    const scalar_t* __restrict b = src[1];
    const scalar_t* __restrict c = src[2];
    const scalar_t* __restrict d = src[3];
    gin_t* __restrict ga = gin[0];
    gin_t* __restrict gb = gin[1];
    gin_t* __restrict gcc = gin[2];
    gin_t* __restrict gd = gin[3];
    const acc_t w0 = s.w[0], w1 = s.w[1], w2 = s.w[2], w3 = s.w[3];
    const acc_t y0 = s.wy[0], y1 = s.wy[1], y2 = s.wy[2], y3 = s.wy[3];
    const acc_t x0 = s.wx[0], x1 = s.wx[1], x2 = s.wx[2], x3 = s.wx[3];
    const acc_t m0 = m * w0, m1 = m * w1, m2 = m * w2, m3 = m * w3;
    int i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        const acc_t g = acc_t(gc[i + j]);
        const acc_t va = acc_t(a[i + j]), vb = acc_t(b[i + j]), vc = acc_t(c[i + j]), vd = acc_t(d[i + j]);
        sv[j] += g * (w0 * va + w1 * vb + w2 * vc + w3 * vd);
        sy[j] += g * (y0 * va + y1 * vb + y2 * vc + y3 * vd);
        sx[j] += g * (x0 * va + x1 * vb + x2 * vc + x3 * vd);
        ga[i + j] += static_cast<gin_t>(m0 * g);
        gb[i + j] += static_cast<gin_t>(m1 * g);
        gcc[i + j] += static_cast<gin_t>(m2 * g);
        gd[i + j] += static_cast<gin_t>(m3 * g);
      }
    }
    for (int j = 0; i < n; ++i, ++j) {
      const acc_t g = acc_t(gc[i]);
      const acc_t va = acc_t(a[i]), vb = acc_t(b[i]), vc = acc_t(c[i]), vd = acc_t(d[i]);
      sv[j] += g * (w0 * va + w1 * vb + w2 * vc + w3 * vd);
      sy[j] += g * (y0 * va + y1 * vb + y2 * vc + y3 * vd);
      sx[j] += g * (x0 * va + x1 * vb + x2 * vc + x3 * vd);
      ga[i] += static_cast<gin_t>(m0 * g);
      gb[i] += static_cast<gin_t>(m1 * g);
      gcc[i] += static_cast<gin_t>(m2 * g);
      gd[i] += static_cast<gin_t>(m3 * g);
    }
  } else {
    for (int i = 0; i < n; ++i) {
      const int j = i % kLanes;
      const acc_t g = acc_t(gc[i]);
      for (int q = 0; q < s.nv; ++q) {
        const acc_t v = acc_t(src[q][i]);
        sv[j] += g * s.w[q] * v;
        sy[j] += g * s.wy[q] * v;
        sx[j] += g * s.wx[q] * v;
        gin[q][i] += static_cast<gin_t>(m * s.w[q] * g);
      }
    }
  }
  acc_t tv = 0, ty = 0, tx = 0;
  for (int j = 0; j < kLanes; ++j) {
    tv += sv[j];
    ty += sy[j];
    tx += sx[j];
  }
  sums[0] += tv;
  sums[1] += ty;
  sums[2] += tx;
}

}  // namespace nhwc
}  // namespace dcn
}  // namespace edvr_fast

// Index and bilinear-sampling math of modulated deformable convolution, shared by the CUDA kernels
// and the plain C++ host tests (tests/cpp). No Torch types here: ctest compiles it with g++ alone.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define EDVR_HD __host__ __device__ __forceinline__
#else
#define EDVR_HD inline
#endif

namespace edvr_fast {
namespace dcn {

// Geometry of one convolution; plain ints so that it can be passed to a kernel by value.
struct Geometry {
  int C, H, W;          // input channels and size
  int Ho, Wo;           // output size
  int kh, kw;           // kernel
  int sh, sw, ph, pw, dh, dw;
  int offset_groups;    // G
  EDVR_HD int K() const { return kh * kw; }
  EDVR_HD int L() const { return Ho * Wo; }
  EDVR_HD int channels_per_group() const { return C / offset_groups; }
};

// Position of one work item (image, offset group, tap, output pixel), decomposed from a flat index
// ordered with the output pixel fastest (coalesced access to columns, offsets and masks).
struct Item {
  int64_t n;
  int g, k, ho, wo;
};

EDVR_HD Item decompose(int64_t flat, const Geometry& geo) {
  Item it;
  const int64_t L = geo.L();
  const int64_t l = flat % L;
  int64_t rest = flat / L;
  it.k = static_cast<int>(rest % geo.K());
  rest /= geo.K();
  it.g = static_cast<int>(rest % geo.offset_groups);
  it.n = rest / geo.offset_groups;
  it.ho = static_cast<int>(l / geo.Wo);
  it.wo = static_cast<int>(l % geo.Wo);
  return it;
}

// Channel of dy for (g, k) in the offset tensor; dx is the next one (interleaved pairs, DCNv2 layout).
EDVR_HD int offset_channel(int g, int k, int K) { return 2 * (g * K + k); }
EDVR_HD int mask_channel(int g, int k, int K) { return g * K + k; }

// Where tap k of output pixel (ho, wo) samples, before the learned offset (whole pixels).
EDVR_HD void base_position(const Geometry& geo, int ho, int wo, int k, int* y, int* x) {
  const int i = k / geo.kw, j = k % geo.kw;
  *y = ho * geo.sh - geo.ph + i * geo.dh;
  *x = wo * geo.sw - geo.pw + j * geo.dw;
}

// The four bilinear corners of (y, x), ordered (y0,x0), (y0,x1), (y1,x0), (y1,x1).
// A corner outside the image has weight 0 and index -1: zero outside the image (the DCNv2 rule,
// which also makes a point at or beyond one pixel outside the border sample exactly zero).
template <typename acc_t>
struct Corners {
  int64_t idx[4];  // y * W + x within one channel plane, or -1
  acc_t w[4];      // bilinear weight, 0 where idx is -1
  acc_t ly, lx;    // fractional parts
};

// The point is (by + dy, bx + dx) with a whole-pixel base (by, bx). Its integer and fractional parts
// are taken from the offset alone, which is exact in floating point: summing first would round a
// large coordinate, move the fraction and, near a whole pixel, flip floor() and the gradient with it.
template <typename acc_t>
EDVR_HD Corners<acc_t> corners(int by, int bx, acc_t dy, acc_t dx, int H, int W) {
  Corners<acc_t> c;
  const acc_t fy = floor(dy), fx = floor(dx);
  c.ly = dy - fy;
  c.lx = dx - fx;
  // Coarse range check first: NaN fails it, and so does an offset too large for an int.
  const acc_t y = static_cast<acc_t>(by) + dy, x = static_cast<acc_t>(bx) + dx;
  bool inside = y > acc_t(-2) && y < acc_t(H + 1) && x > acc_t(-2) && x < acc_t(W + 1);
  const int y0 = inside ? by + static_cast<int>(fy) : 0, x0 = inside ? bx + static_cast<int>(fx) : 0;
  // The exact DCNv2 rule: -1 < y < H and -1 < x < W, else the sample and its gradients are zero.
  inside = inside && (y0 > -1 || (y0 == -1 && c.ly > acc_t(0))) && y0 < H &&
           (x0 > -1 || (x0 == -1 && c.lx > acc_t(0))) && x0 < W;
  if (!inside) {
    for (int q = 0; q < 4; ++q) {
      c.idx[q] = -1;
      c.w[q] = acc_t(0);
    }
    c.ly = acc_t(0);
    c.lx = acc_t(0);
    return c;
  }
  const int y1 = y0 + 1, x1 = x0 + 1;
  const acc_t hy = acc_t(1) - c.ly, hx = acc_t(1) - c.lx;
  const bool vy0 = y0 >= 0, vy1 = y1 <= H - 1, vx0 = x0 >= 0, vx1 = x1 <= W - 1;
  const int ys[4] = {y0, y0, y1, y1};
  const int xs[4] = {x0, x1, x0, x1};
  const bool vs[4] = {vy0 && vx0, vy0 && vx1, vy1 && vx0, vy1 && vx1};
  const acc_t ws[4] = {hy * hx, hy * c.lx, c.ly * hx, c.ly * c.lx};
  for (int q = 0; q < 4; ++q) {
    c.idx[q] = vs[q] ? static_cast<int64_t>(ys[q]) * W + xs[q] : -1;
    c.w[q] = vs[q] ? ws[q] : acc_t(0);
  }
  return c;
}

// Bilinear value of one channel plane at the corners.
template <typename acc_t, typename scalar_t>
EDVR_HD acc_t interpolate(const scalar_t* plane, const Corners<acc_t>& c) {
  acc_t v = acc_t(0);
  for (int q = 0; q < 4; ++q) {
    if (c.idx[q] >= 0) v += c.w[q] * static_cast<acc_t>(plane[c.idx[q]]);
  }
  return v;
}

// d(value)/dy and d(value)/dx of the bilinear value; invalid corners contribute nothing.
template <typename acc_t, typename scalar_t>
EDVR_HD void interpolate_grad(const scalar_t* plane, const Corners<acc_t>& c, acc_t* dvdy, acc_t* dvdx) {
  const acc_t hy = acc_t(1) - c.ly, hx = acc_t(1) - c.lx;
  const acc_t wy[4] = {-hx, -c.lx, hx, c.lx};
  const acc_t wx[4] = {-hy, hy, -c.ly, c.ly};
  acc_t gy = acc_t(0), gx = acc_t(0);
  for (int q = 0; q < 4; ++q) {
    if (c.idx[q] >= 0) {
      const acc_t v = static_cast<acc_t>(plane[c.idx[q]]);
      gy += wy[q] * v;
      gx += wx[q] * v;
    }
  }
  *dvdy = gy;
  *dvdx = gx;
}

}  // namespace dcn
}  // namespace edvr_fast

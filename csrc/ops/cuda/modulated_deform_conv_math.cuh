// Index and bilinear-sampling math of modulated deformable convolution, and the per-work-item bodies
// of the column gather and its backward: shared by the CUDA kernels, the CPU kernels
// (cpu/modulated_deform_conv_cpu.cpp) and the plain C++ host tests (tests/cpp). No Torch types here:
// ctest compiles it with g++ alone.
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

// grad_input accumulation: atomic in device code (work items of one image run concurrently), a plain
// add on the host, where the CPU kernel gives each (image, offset group) to one thread.
template <typename grad_in_t, typename acc_t>
EDVR_HD void scatter_add(grad_in_t* p, acc_t v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, static_cast<grad_in_t>(v));
#else
  *p += static_cast<grad_in_t>(v);
#endif
}

// Pointers of one chunk of n_chunk images (image 0 of the chunk first) and its column buffer, laid
// out [C*K, n_chunk*L]: row (g*Cg + c)*K + k, column n*L + l.
template <typename scalar_t>
struct ChunkPtrs {
  const scalar_t* input;   // [n, C, H, W]
  const scalar_t* offset;  // [n, 2*G*K, Ho, Wo]
  const scalar_t* mask;    // [n, G*K, Ho, Wo]
  int64_t n_chunk;
};

// cols[(g*Cg + c)*K + k][n*L + l] = mask * bilinear(input[n][g*Cg + c], tap k of pixel l), c < Cg.
template <typename acc_t, typename scalar_t>
EDVR_HD void gather_item(const ChunkPtrs<scalar_t>& p, scalar_t* cols, const Geometry& geo, const Item& it) {
  const int K = geo.K();
  const int64_t L = geo.L();
  const int64_t plane = int64_t(geo.H) * geo.W;
  const int Cg = geo.channels_per_group();
  const int64_t l = int64_t(it.ho) * geo.Wo + it.wo;
  const scalar_t* off = p.offset + it.n * (2 * geo.offset_groups * K) * L;
  const int oc = offset_channel(it.g, it.k, K);
  const acc_t dy = static_cast<acc_t>(off[oc * L + l]);
  const acc_t dx = static_cast<acc_t>(off[(oc + 1) * L + l]);
  const acc_t m = static_cast<acc_t>(p.mask[(it.n * geo.offset_groups * K + mask_channel(it.g, it.k, K)) * L + l]);
  int by, bx;
  base_position(geo, it.ho, it.wo, it.k, &by, &bx);
  const Corners<acc_t> c = corners<acc_t>(by, bx, dy, dx, geo.H, geo.W);
  const scalar_t* in = p.input + (it.n * geo.C + int64_t(it.g) * Cg) * plane;
  scalar_t* out = cols + ((int64_t(it.g) * Cg * K + it.k) * p.n_chunk + it.n) * L + l;
  const int64_t row_stride = int64_t(K) * p.n_chunk * L;  // next channel
  for (int ch = 0; ch < Cg; ++ch) {
    out[ch * row_stride] = static_cast<scalar_t>(m * interpolate<acc_t>(in + ch * plane, c));
  }
}

// Backward of one work item, from the column gradient grad_cols (the layout of the columns):
// grad_offset (dy, dx) and grad_mask of the item, written once, and the item's share of grad_input
// (chunk-relative, [n, C, H, W], accumulated by scatter_add).
template <typename acc_t, typename scalar_t, typename grad_in_t>
EDVR_HD void backward_item(const ChunkPtrs<scalar_t>& p, const scalar_t* grad_cols, grad_in_t* grad_input,
                           scalar_t* grad_offset, scalar_t* grad_mask, const Geometry& geo, const Item& it) {
  const int K = geo.K();
  const int64_t L = geo.L();
  const int64_t plane = int64_t(geo.H) * geo.W;
  const int Cg = geo.channels_per_group();
  const int64_t l = int64_t(it.ho) * geo.Wo + it.wo;
  const int64_t off_base = it.n * (2 * geo.offset_groups * K) * L;
  const int oc = offset_channel(it.g, it.k, K);
  const acc_t dy = static_cast<acc_t>(p.offset[off_base + oc * L + l]);
  const acc_t dx = static_cast<acc_t>(p.offset[off_base + (oc + 1) * L + l]);
  const int64_t m_idx = (it.n * geo.offset_groups * K + mask_channel(it.g, it.k, K)) * L + l;
  const acc_t m = static_cast<acc_t>(p.mask[m_idx]);
  int by, bx;
  base_position(geo, it.ho, it.wo, it.k, &by, &bx);
  const Corners<acc_t> c = corners<acc_t>(by, bx, dy, dx, geo.H, geo.W);
  const int64_t ch0 = it.n * geo.C + int64_t(it.g) * Cg;
  const scalar_t* in = p.input + ch0 * plane;
  grad_in_t* gin = grad_input + ch0 * plane;
  const scalar_t* gc = grad_cols + ((int64_t(it.g) * Cg * K + it.k) * p.n_chunk + it.n) * L + l;
  const int64_t row_stride = int64_t(K) * p.n_chunk * L;
  acc_t g_mask = 0, g_y = 0, g_x = 0;
  for (int ch = 0; ch < Cg; ++ch) {
    const acc_t gcol = static_cast<acc_t>(gc[ch * row_stride]);
    const scalar_t* src = in + ch * plane;
    const acc_t v = interpolate<acc_t>(src, c);
    acc_t vy, vx;
    interpolate_grad<acc_t>(src, c, &vy, &vx);
    g_mask += gcol * v;
    const acc_t gv = gcol * m;
    g_y += gv * vy;
    g_x += gv * vx;
    grad_in_t* gp = gin + ch * plane;
    for (int q = 0; q < 4; ++q) {
      if (c.idx[q] >= 0) scatter_add(gp + c.idx[q], gv * c.w[q]);
    }
  }
  grad_offset[off_base + oc * L + l] = static_cast<scalar_t>(g_y);
  grad_offset[off_base + (oc + 1) * L + l] = static_cast<scalar_t>(g_x);
  grad_mask[m_idx] = static_cast<scalar_t>(g_mask);
}

}  // namespace dcn
}  // namespace edvr_fast

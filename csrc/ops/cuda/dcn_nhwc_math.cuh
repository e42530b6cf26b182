// Index and sampling math of the NHWC (channels-last) CUDA kernel (modulated_deform_conv_nhwc.cu): one
// (pixel, tap, offset group) sample computed once and applied to a run of contiguous channels. No Torch
// types: tests/cpp/test_dcn_nhwc_math.cpp checks it with g++ against modulated_deform_conv_math.cuh.
#pragma once

#include <cstdint>

#include "ops/cuda/modulated_deform_conv_math.cuh"

namespace edvr_fast {
namespace dcn {
namespace nhwc_cuda {

// Element strides of a 4-D tensor (n, c, h, w): offsets and masks are read in whatever layout they come.
struct Strides4 {
  int64_t n, c, h, w;
  EDVR_HD int64_t at(int64_t in, int64_t ic, int64_t ih, int64_t iw) const { return in * n + ic * c + ih * h + iw * w; }
};

// Everything a kernel needs besides the pointers, passed by value.
struct Args {
  Geometry geo;
  int64_t N;
  int groups;      // convolution groups
  int Cin_g;       // input channels per convolution group (= weight.size(1))
  int Cog;         // output channels per convolution group
  Strides4 os, ms;    // offset, mask (read)
  Strides4 gos, gms;  // grad_offset, grad_mask buffers (written)
  // Every 8-channel segment lies in one offset group and starts at a multiple of 8: Cg % 8 == 0 and
  // Cin_g % 8 == 0. Then one sample per segment, vector loads/atomics and a 4-lane shuffle reduction.
  bool single_group_segments;
  bool vec_ok;  // single_group_segments and the input / grad_input pointers 16-byte aligned
  EDVR_HD int64_t pixels() const { return N * geo.L(); }
  EDVR_HD int Co() const { return groups * Cog; }
};

// Output pixel P of the flattened [N, Ho, Wo] (NHWC row order: P * Co + co is the output element).
struct Pixel {
  int64_t n;
  int ho, wo;
};

EDVR_HD Pixel pixel_of(int64_t P, const Geometry& geo) {
  const int64_t L = geo.L();
  Pixel p;
  p.n = P / L;
  const int l = static_cast<int>(P - p.n * L);
  p.ho = l / geo.Wo;
  p.wo = l % geo.Wo;
  return p;
}

// Element (n, y*W + x, c) of an NHWC image batch with C channels.
EDVR_HD int64_t nhwc_index(int64_t n, int64_t pix, int c, const Geometry& geo) {
  return (n * geo.H * geo.W + pix) * geo.C + c;
}

// The weight rearranged tap-major, [groups, K, Cin_g, Cog]: reduction index (k, c) for output channel co.
EDVR_HD int64_t wt_index(int g, int k, int c, int co, const Args& a) {
  return ((int64_t(g) * a.geo.K() + k) * a.Cin_g + c) * a.Cog + co;
}

// Offset group of absolute input channel c, and the end (exclusive, absolute) of the run of channels from c
// that share it, capped at c_end.
EDVR_HD int offset_group_of(int c, const Geometry& geo) { return c / geo.channels_per_group(); }
EDVR_HD int run_end(int c, int c_end, const Geometry& geo) {
  const int e = (offset_group_of(c, geo) + 1) * geo.channels_per_group();
  return e < c_end ? e : c_end;
}

// One sample: the four corners (modulated_deform_conv_math.cuh's corners(), same NaN / outside rules)
// and the mask of offset group og at tap k of output pixel px.
template <typename acc_t>
struct TapSample {
  Corners<acc_t> c;
  acc_t m;
};

template <typename acc_t, typename scalar_t>
EDVR_HD TapSample<acc_t> tap_sample(const Args& a, const scalar_t* offset, const scalar_t* mask, const Pixel& px,
                                    int og, int k) {
  const Geometry& geo = a.geo;
  const int K = geo.K();
  const int oc = offset_channel(og, k, K);
  const acc_t dy = static_cast<acc_t>(offset[a.os.at(px.n, oc, px.ho, px.wo)]);
  const acc_t dx = static_cast<acc_t>(offset[a.os.at(px.n, oc + 1, px.ho, px.wo)]);
  TapSample<acc_t> s;
  s.m = static_cast<acc_t>(mask[a.ms.at(px.n, mask_channel(og, k, K), px.ho, px.wo)]);
  int by, bx;
  base_position(geo, px.ho, px.wo, k, &by, &bx);
  s.c = corners<acc_t>(by, bx, dy, dx, geo.H, geo.W);
  return s;
}

// Column values of V channels from the corner values v[q][j] (0 where a corner is outside):
// out[j] = m * sum_q w[q] * v[q][j].
template <int V, typename acc_t>
EDVR_HD void combine(const acc_t (&v)[4][V], const TapSample<acc_t>& s, acc_t (&out)[V]) {
  for (int j = 0; j < V; ++j) {
    acc_t x = acc_t(0);
    for (int q = 0; q < 4; ++q) x += s.c.w[q] * v[q][j];
    out[j] = s.m * x;
  }
}

// Backward of combine for V channels with column gradients gcol[j]: the share of each corner's gradient
// gin[q][j] (to add to grad_input; zero for corners outside), and this run's part of d/d(dy), d/d(dx),
// d/d(mask) added to *gy, *gx, *gm. Same formulas as interpolate_grad / backward_item.
template <int V, typename acc_t>
EDVR_HD void combine_backward(const acc_t (&v)[4][V], const TapSample<acc_t>& s, const acc_t (&gcol)[V],
                              acc_t (&gin)[4][V], acc_t* gy, acc_t* gx, acc_t* gm) {
  const Corners<acc_t>& c = s.c;
  const acc_t hy = acc_t(1) - c.ly, hx = acc_t(1) - c.lx;
  const acc_t wy[4] = {-hx, -c.lx, hx, c.lx};
  const acc_t wx[4] = {-hy, hy, -c.ly, c.ly};
  acc_t sy = acc_t(0), sx = acc_t(0), sm = acc_t(0);
  for (int j = 0; j < V; ++j) {
    acc_t val = acc_t(0), vy = acc_t(0), vx = acc_t(0);
    for (int q = 0; q < 4; ++q) {
      const acc_t x = c.idx[q] >= 0 ? v[q][j] : acc_t(0);
      val += c.w[q] * x;
      vy += wy[q] * x;
      vx += wx[q] * x;
    }
    sm += gcol[j] * val;
    const acc_t gv = gcol[j] * s.m;
    sy += gv * vy;
    sx += gv * vx;
    for (int q = 0; q < 4; ++q) gin[q][j] = gv * c.w[q];
  }
  *gy += sy;
  *gx += sx;
  *gm += sm;
}

// Scalar path for a run of nc <= V channels starting at absolute channel c of image n (all in one offset
// group): corner values read one by one (the vector loads of the kernel are the same numbers).
template <int V, typename acc_t, typename scalar_t>
EDVR_HD void load_corners(const scalar_t* input, const Args& a, int64_t n, int c, int nc, const Corners<acc_t>& s,
                          acc_t (&v)[4][V]) {
  for (int q = 0; q < 4; ++q) {
    for (int j = 0; j < V; ++j) {
      v[q][j] = (s.idx[q] >= 0 && j < nc) ? static_cast<acc_t>(input[nhwc_index(n, s.idx[q], c + j, a.geo)])
                                          : acc_t(0);
    }
  }
}

// Column values of channels [c, c_end) (absolute, c_end - c <= V) at tap k of pixel px, offset group by
// offset group: out[j] for channel c + j, 0 beyond c_end. The reference path of the kernel's gather.
template <int V, typename acc_t, typename scalar_t>
EDVR_HD void gather_channels(const scalar_t* input, const scalar_t* offset, const scalar_t* mask, const Args& a,
                             const Pixel& px, int k, int c, int c_end, acc_t (&out)[V]) {
  for (int j = 0; j < V; ++j) out[j] = acc_t(0);
  for (int r = c; r < c_end;) {
    const int e = run_end(r, c_end, a.geo);
    const TapSample<acc_t> s = tap_sample<acc_t>(a, offset, mask, px, offset_group_of(r, a.geo), k);
    for (int ch = r; ch < e; ++ch) {
      acc_t x = acc_t(0);
      for (int q = 0; q < 4; ++q) {
        if (s.c.idx[q] >= 0) x += s.c.w[q] * static_cast<acc_t>(input[nhwc_index(px.n, s.c.idx[q], ch, a.geo)]);
      }
      out[ch - c] = s.m * x;
    }
    r = e;
  }
}

// Backward of gather_channels for channels [c, c_end) with column gradients gcol[j], run by run: grad_input
// (NHWC, [N, H, W, C]) and each run's d/d(dy), d/d(dx), d/d(mask) added with scatter_add (atomic on the
// device) to the grad_offset / grad_mask buffers (strides a.gos / a.gms). The general path of the kernel
// (segments that cross offset groups); the fast path computes the same with combine_backward.
template <int V, typename acc_t, typename scalar_t, typename grad_t>
EDVR_HD void backward_channels(const scalar_t* input, const scalar_t* offset, const scalar_t* mask, const Args& a,
                               const Pixel& px, int k, int c, int c_end, const acc_t (&gcol)[V], grad_t* grad_input,
                               grad_t* grad_offset, grad_t* grad_mask) {
  const int K = a.geo.K();
  for (int r = c; r < c_end;) {
    const int e = run_end(r, c_end, a.geo);
    const int og = offset_group_of(r, a.geo);
    const TapSample<acc_t> s = tap_sample<acc_t>(a, offset, mask, px, og, k);
    acc_t gy = acc_t(0), gx = acc_t(0), gm = acc_t(0);
    for (int ch = r; ch < e; ++ch) {
      acc_t v[4][1];
      for (int q = 0; q < 4; ++q) {
        v[q][0] = s.c.idx[q] >= 0 ? static_cast<acc_t>(input[nhwc_index(px.n, s.c.idx[q], ch, a.geo)]) : acc_t(0);
      }
      const acc_t g1[1] = {gcol[ch - c]};
      acc_t gin[4][1];
      combine_backward<1>(v, s, g1, gin, &gy, &gx, &gm);
      for (int q = 0; q < 4; ++q) {
        if (s.c.idx[q] >= 0) scatter_add(grad_input + nhwc_index(px.n, s.c.idx[q], ch, a.geo), gin[q][0]);
      }
    }
    const int oc = offset_channel(og, k, K);
    scatter_add(grad_offset + a.gos.at(px.n, oc, px.ho, px.wo), gy);
    scatter_add(grad_offset + a.gos.at(px.n, oc + 1, px.ho, px.wo), gx);
    scatter_add(grad_mask + a.gms.at(px.n, mask_channel(og, k, K), px.ho, px.wo), gm);
    r = e;
  }
}

}  // namespace nhwc_cuda
}  // namespace dcn
}  // namespace edvr_fast

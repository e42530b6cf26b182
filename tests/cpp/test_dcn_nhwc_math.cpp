// Host test of csrc/ops/cuda/dcn_nhwc_math.cuh (the index and sampling math of the NHWC CUDA kernel) against
// the column kernel's math in modulated_deform_conv_math.cuh: the same samples (corners(), NaN and outside
// rules) read from NHWC images with offsets / masks in either layout, and the same gradients as backward_item.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "expect.h"
#include "ops/cuda/dcn_nhwc_math.cuh"

using namespace edvr_fast::dcn;
using namespace edvr_fast::dcn::nhwc_cuda;

namespace {

bool close(double a, double b, double tol = 1e-12) { return std::fabs(a - b) <= tol * (1.0 + std::fabs(b)); }

// A case: NCHW input, offsets and masks in NCHW, and their NHWC copies.
struct Case {
  Geometry geo;
  int64_t N;
  std::vector<double> in_nchw, in_nhwc, off_nchw, off_nhwc, mask_nchw, mask_nhwc;
};

std::vector<double> to_nhwc(const std::vector<double>& t, int64_t N, int C, int H, int W) {
  std::vector<double> r(t.size());
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int h = 0; h < H; ++h)
        for (int w = 0; w < W; ++w) r[((n * H + h) * W + w) * C + c] = t[((n * C + c) * H + h) * W + w];
  return r;
}

Case make_case(int N, int C, int H, int W, int G, int kh, int kw, int stride, int pad) {
  Case k;
  Geometry& g = k.geo;
  g = Geometry{C, H, W, 0, 0, kh, kw, stride, stride, pad, pad, 1, 1, G};
  g.Ho = (H + 2 * pad - kh) / stride + 1;
  g.Wo = (W + 2 * pad - kw) / stride + 1;
  k.N = N;
  const int K = g.K();
  k.in_nchw.resize(size_t(N) * C * H * W);
  for (size_t i = 0; i < k.in_nchw.size(); ++i) k.in_nchw[i] = std::sin(0.37 * double(i) + 0.2) + 0.01 * double(i % 7);
  k.off_nchw.resize(size_t(N) * 2 * G * K * g.Ho * g.Wo);
  for (size_t i = 0; i < k.off_nchw.size(); ++i) {
    double v = 3.0 * std::sin(1.7 * double(i) + 0.5);
    if (i % 13 == 0) v = 40.0 * std::cos(double(i));  // far outside the image
    if (i % 29 == 0) v = NAN;
    if (i % 31 == 0) v = -1.0;  // exactly one pixel outside at the border taps
    if (i % 37 == 0) v = 0.0;   // on a pixel
    k.off_nchw[i] = v;
  }
  k.mask_nchw.resize(size_t(N) * G * K * g.Ho * g.Wo);
  for (size_t i = 0; i < k.mask_nchw.size(); ++i) k.mask_nchw[i] = 0.5 + 0.5 * std::cos(0.9 * double(i));
  k.in_nhwc = to_nhwc(k.in_nchw, N, C, H, W);
  k.off_nhwc = to_nhwc(k.off_nchw, N, 2 * G * K, g.Ho, g.Wo);
  k.mask_nhwc = to_nhwc(k.mask_nchw, N, G * K, g.Ho, g.Wo);
  return k;
}

Strides4 nchw_strides(int C, int H, int W) { return Strides4{int64_t(C) * H * W, int64_t(H) * W, W, 1}; }
Strides4 nhwc_strides(int C, int H, int W) { return Strides4{int64_t(C) * H * W, 1, int64_t(W) * C, C}; }

Args make_args(const Case& k, bool nhwc_offsets) {
  Args a{};
  a.geo = k.geo;
  a.N = k.N;
  a.groups = 1;
  a.Cin_g = k.geo.C;
  a.Cog = 1;
  const int GK = k.geo.offset_groups * k.geo.K();
  a.os = nhwc_offsets ? nhwc_strides(2 * GK, k.geo.Ho, k.geo.Wo) : nchw_strides(2 * GK, k.geo.Ho, k.geo.Wo);
  a.ms = nhwc_offsets ? nhwc_strides(GK, k.geo.Ho, k.geo.Wo) : nchw_strides(GK, k.geo.Ho, k.geo.Wo);
  a.gos = nchw_strides(2 * GK, k.geo.Ho, k.geo.Wo);
  a.gms = nchw_strides(GK, k.geo.Ho, k.geo.Wo);
  a.single_group_segments = k.geo.channels_per_group() % 8 == 0 && a.Cin_g % 8 == 0;
  a.vec_ok = a.single_group_segments;
  return a;
}

// The column gradient used by the backward checks, a function of (image, pixel, tap, channel).
double gcol_of(int64_t n, int64_t l, int k, int c) { return std::cos(0.31 * double(n * 1000 + l) + 0.7 * k + 1.1 * c); }

// Forward: every sample of every pixel, tap and 8-channel segment equals the column kernel's gather.
void check_gather(const Case& k, bool nhwc_offsets) {
  const Geometry& geo = k.geo;
  const Args a = make_args(k, nhwc_offsets);
  const double* off = nhwc_offsets ? k.off_nhwc.data() : k.off_nchw.data();
  const double* msk = nhwc_offsets ? k.mask_nhwc.data() : k.mask_nchw.data();
  // Reference columns [C*K, N*L] from gather_item on the NCHW tensors.
  const int K = geo.K();
  const int64_t L = geo.L();
  std::vector<double> cols(size_t(geo.C) * K * k.N * L, -7.0);
  const ChunkPtrs<double> p{k.in_nchw.data(), k.off_nchw.data(), k.mask_nchw.data(), k.N};
  for (int64_t flat = 0; flat < k.N * geo.offset_groups * K * L; ++flat)
    gather_item<double>(p, cols.data(), geo, decompose(flat, geo));
  int checked = 0;
  for (int64_t P = 0; P < a.pixels(); ++P) {
    const Pixel px = pixel_of(P, geo);
    EXPECT(px.n == P / L && px.ho == (P % L) / geo.Wo && px.wo == (P % L) % geo.Wo);
    for (int t = 0; t < K; ++t) {
      for (int c = 0; c < geo.C; c += 8) {
        const int c_end = c + 8 < geo.C ? c + 8 : geo.C;
        double got[8];
        gather_channels<8, double>(k.in_nhwc.data(), off, msk, a, px, t, c, c_end, got);
        for (int j = 0; j < 8; ++j) {
          const double want = c + j < c_end ? cols[(size_t(c + j) * K + t) * k.N * L + P] : 0.0;
          EXPECT(close(got[j], want));
          ++checked;
        }
        if (a.single_group_segments && c_end - c == 8) {  // the kernel's vector path: one sample, combine()
          const TapSample<double> s = tap_sample<double>(a, off, msk, px, offset_group_of(c, geo), t);
          double v[4][8], out[8];
          load_corners<8, double>(k.in_nhwc.data(), a, px.n, c, 8, s.c, v);
          combine<8>(v, s, out);
          for (int j = 0; j < 8; ++j) EXPECT(close(out[j], got[j]));
        }
      }
    }
  }
  EXPECT(checked > 1000);
}

// Backward: grad_input, grad_offset and grad_mask of the column gradient gcol_of equal backward_item's.
void check_backward(const Case& k, bool nhwc_offsets) {
  const Geometry& geo = k.geo;
  const Args a = make_args(k, nhwc_offsets);
  const double* off = nhwc_offsets ? k.off_nhwc.data() : k.off_nchw.data();
  const double* msk = nhwc_offsets ? k.mask_nhwc.data() : k.mask_nchw.data();
  const int K = geo.K();
  const int64_t L = geo.L();
  std::vector<double> gcols(size_t(geo.C) * K * k.N * L);
  for (int c = 0; c < geo.C; ++c)
    for (int t = 0; t < K; ++t)
      for (int64_t P = 0; P < k.N * L; ++P) gcols[(size_t(c) * K + t) * k.N * L + P] = gcol_of(P / L, P % L, t, c);
  std::vector<double> ref_gin(k.in_nchw.size(), 0.0), ref_goff(k.off_nchw.size()), ref_gmask(k.mask_nchw.size());
  const ChunkPtrs<double> p{k.in_nchw.data(), k.off_nchw.data(), k.mask_nchw.data(), k.N};
  for (int64_t flat = 0; flat < k.N * geo.offset_groups * K * L; ++flat)
    backward_item<double>(p, gcols.data(), ref_gin.data(), ref_goff.data(), ref_gmask.data(), geo,
                          decompose(flat, geo));
  // Ours: the general path (backward_channels) and, where segments hold one group, the fast path's math.
  std::vector<double> gin(k.in_nhwc.size(), 0.0), goff(k.off_nchw.size(), 0.0), gmask(k.mask_nchw.size(), 0.0);
  std::vector<double> gin_fast(k.in_nhwc.size(), 0.0), goff_fast(k.off_nchw.size(), 0.0),
      gmask_fast(k.mask_nchw.size(), 0.0);
  for (int64_t P = 0; P < a.pixels(); ++P) {
    const Pixel px = pixel_of(P, geo);
    for (int t = 0; t < K; ++t) {
      for (int c = 0; c < geo.C; c += 8) {
        const int c_end = c + 8 < geo.C ? c + 8 : geo.C;
        double g[8];
        for (int j = 0; j < 8; ++j) g[j] = c + j < c_end ? gcol_of(px.n, P % L, t, c + j) : 0.0;
        backward_channels<8>(k.in_nhwc.data(), off, msk, a, px, t, c, c_end, g, gin.data(), goff.data(),
                             gmask.data());
        if (a.single_group_segments) {
          const int og = offset_group_of(c, geo);
          const TapSample<double> s = tap_sample<double>(a, off, msk, px, og, t);
          double v[4][8], parts[4][8], gy = 0, gx = 0, gm = 0;
          load_corners<8, double>(k.in_nhwc.data(), a, px.n, c, 8, s.c, v);
          combine_backward<8>(v, s, g, parts, &gy, &gx, &gm);
          for (int q = 0; q < 4; ++q) {
            for (int j = 0; j < 8; ++j) {
              if (s.c.idx[q] >= 0) gin_fast[nhwc_index(px.n, s.c.idx[q], c + j, geo)] += parts[q][j];
              else EXPECT(parts[q][j] == 0.0);
            }
          }
          const int oc = offset_channel(og, t, K);
          goff_fast[a.gos.at(px.n, oc, px.ho, px.wo)] += gy;
          goff_fast[a.gos.at(px.n, oc + 1, px.ho, px.wo)] += gx;
          gmask_fast[a.gms.at(px.n, mask_channel(og, t, K), px.ho, px.wo)] += gm;
        }
      }
    }
  }
  const std::vector<double> ref_gin_nhwc = to_nhwc(ref_gin, k.N, geo.C, geo.H, geo.W);
  for (size_t i = 0; i < gin.size(); ++i) EXPECT(close(gin[i], ref_gin_nhwc[i], 1e-10));
  for (size_t i = 0; i < goff.size(); ++i) EXPECT(close(goff[i], ref_goff[i], 1e-10));
  for (size_t i = 0; i < gmask.size(); ++i) EXPECT(close(gmask[i], ref_gmask[i], 1e-10));
  if (a.single_group_segments) {
    for (size_t i = 0; i < gin.size(); ++i) EXPECT(close(gin_fast[i], ref_gin_nhwc[i], 1e-10));
    for (size_t i = 0; i < goff.size(); ++i) EXPECT(close(goff_fast[i], ref_goff[i], 1e-10));
    for (size_t i = 0; i < gmask.size(); ++i) EXPECT(close(gmask_fast[i], ref_gmask[i], 1e-10));
  }
  // Not vacuous: some samples fall inside the image and give non-zero gradients.
  double norm = 0;
  for (double v : goff) norm += std::fabs(v);
  EXPECT(norm > 1.0);
}

void check_indices() {
  Geometry geo{24, 5, 7, 5, 7, 3, 3, 1, 1, 1, 1, 1, 1, 3};  // C=24, G=3 (8 per group)
  EXPECT(nhwc_index(2, 3 * 7 + 4, 5, geo) == ((2 * 5 + 3) * 7 + 4) * 24 + 5);
  EXPECT(offset_group_of(7, geo) == 0 && offset_group_of(8, geo) == 1 && offset_group_of(23, geo) == 2);
  EXPECT(run_end(3, 11, geo) == 8 && run_end(8, 11, geo) == 11 && run_end(16, 30, geo) == 24);
  Args a{};
  a.geo = geo;
  a.groups = 2;
  a.Cin_g = 12;
  a.Cog = 5;
  // Tap-major weight [groups, K, Cin_g, Cog]: consecutive output channels adjacent.
  EXPECT(wt_index(1, 2, 3, 4, a) == ((1 * 9 + 2) * 12 + 3) * 5 + 4);
  EXPECT(wt_index(0, 0, 0, 1, a) - wt_index(0, 0, 0, 0, a) == 1);
  const Strides4 s = nhwc_strides(18, 4, 6);
  EXPECT(s.at(1, 2, 3, 4) == ((1 * 4 + 3) * 6 + 4) * 18 + 2);
  a.N = 3;
  EXPECT(a.pixels() == 3 * 35 && a.Co() == 10);
}

// float instantiation (what fp32/bf16/fp16 kernels run) agrees with double.
void check_float() {
  const Case k = make_case(1, 16, 6, 5, 2, 3, 3, 1, 1);
  Args a = make_args(k, false);
  std::vector<float> in(k.in_nhwc.begin(), k.in_nhwc.end()), off(k.off_nchw.begin(), k.off_nchw.end()),
      msk(k.mask_nchw.begin(), k.mask_nchw.end());
  for (int64_t P = 0; P < a.pixels(); ++P) {
    const Pixel px = pixel_of(P, k.geo);
    for (int t = 0; t < 9; ++t) {
      float f[8];
      double d[8];
      gather_channels<8, float>(in.data(), off.data(), msk.data(), a, px, t, 8, 16, f);
      gather_channels<8, double>(k.in_nhwc.data(), k.off_nchw.data(), k.mask_nchw.data(), a, px, t, 8, 16, d);
      for (int j = 0; j < 8; ++j) EXPECT(std::fabs(double(f[j]) - d[j]) < 1e-5);
    }
  }
}

}  // namespace

int main() {
  // Cg = 8: one group per segment (the fast path); Cg = 4 and Cg = 12: segments cross groups (general path);
  // C = 12: a last segment of 4 channels. Offsets in NCHW and NHWC.
  const Case cases[] = {make_case(2, 16, 7, 9, 2, 3, 3, 1, 1), make_case(1, 16, 6, 5, 4, 3, 3, 2, 1),
                        make_case(2, 24, 5, 6, 2, 2, 3, 1, 0), make_case(1, 12, 8, 4, 1, 3, 3, 1, 2)};
  for (const Case& k : cases) {
    for (bool nhwc_offsets : {false, true}) {
      check_gather(k, nhwc_offsets);
      check_backward(k, nhwc_offsets);
    }
  }
  check_indices();
  check_float();
  if (failures) {
    std::printf("dcn nhwc math: %d checks failed\n", failures);
    return 1;
  }
  std::printf("dcn nhwc math: all checks passed\n");
  return 0;
}

// The NHWC (channels-last) CPU kernel of edvr_fast::modulated_deform_conv2d. Per (tap, offset group) the
// offsets, masks and bilinear weights of eight output pixels are computed at once in vector registers and
// the four corners read as runs of 8 floats (dcn_lanes_avx2.h; other dtypes and CPUs: the scalar rows of
// dcn_nhwc_rows.h). Two drivers:
//   - implicit GEMM (fp32, AVX2 rows, one conv group, Co % 8 == 0: EDVR's DCNs): each thread gathers a
//     tile of column rows (a few dozen pixels of one image) and multiplies it at once with our own
//     register-blocked GEMM (dcn_gemm_avx2.h) while it is in cache; the backward computes grad_cols per
//     tile, then gathers the columns and scatters grad_cols in one pass, then adds grad_out^T x columns to
//     the worker's own grad_weight;
//   - blocks (everything else): the threads gather a block of column rows, then one multithreaded GEMM
//     per block (MKL/oneDNN through ATen) multiplies it; GEMMs never run inside the parallel region, as
//     concurrent single-threaded BLAS calls serialise (measured, BENCHMARKS.md).
// No C*K x N*L column buffer exists. Both backwards write grad_input (and the implicit one grad_weight)
// into one fp32 buffer per worker, with work assigned to workers by index (a partition that depends on
// the shape and the thread count only), summed in worker order at the end: deterministic.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "ops/cpu/dcn_gemm_avx2.h"
#include "ops/cpu/dcn_lanes_avx2.h"
#include "ops/cpu/dcn_nhwc_rows.h"
#include "ops/cpu/modulated_deform_conv_nhwc_cpu.h"
#include "ops/modulated_deform_conv_driver.h"

namespace edvr_fast {
namespace dcn {
namespace nhwc {
namespace {

// Bytes of column rows per thread chunk (the tile stays in L2 while the GEMM reads it).
constexpr int64_t kChunkBytes = int64_t(192) << 10;
// Rows of a block at least (the GEMMs' M): smaller GEMMs lose efficiency (BENCHMARKS.md).
constexpr int64_t kMinBlockRows = 512;
// The backward keeps one grad_input buffer per worker: at most this many workers.
constexpr int64_t kMaxBackwardWorkers = 8;

// Image, channel and pixel strides of a tensor whose pixels lie at one stride (NCHW or NHWC dense).
struct PixelStrides {
  int64_t n, c, p;
};

PixelStrides pixel_strides(const at::Tensor& t) { return PixelStrides{t.stride(0), t.stride(1), t.stride(3)}; }

at::Tensor pixel_uniform(const at::Tensor& t) {
  return t.stride(2) == t.size(3) * t.stride(3) ? t : t.contiguous();
}

bool fast_path_applies(at::ScalarType st, int64_t C, int64_t H, int64_t W, int64_t groups, int64_t offset_groups);

template <typename scalar_t>
struct Plan {
  Geometry geo;
  int Cig;           // input channels per conv group
  int64_t CK;        // columns of a row: C*K, ordered (conv group, tap, channel in group)
  int64_t image;     // H*W*C
  const scalar_t* in;  // NHWC dense
  const scalar_t* off;
  PixelStrides so;
  const scalar_t* msk;
  PixelStrides sm;
  std::vector<int64_t> col0;  // per offset group, the column of its channel 0 at tap 0 (fast path)
  bool fast = false;          // the AVX2 float path applies
};

template <typename scalar_t>
Plan<scalar_t> make_plan(const Geometry& geo, int64_t groups, const at::Tensor& in, const at::Tensor& offset,
                         const at::Tensor& mask) {
  Plan<scalar_t> P;
  P.geo = geo;
  P.Cig = static_cast<int>(geo.C / groups);
  P.CK = int64_t(geo.C) * geo.K();
  P.image = int64_t(geo.H) * geo.W * geo.C;
  P.in = in.data_ptr<scalar_t>();
  P.off = offset.data_ptr<scalar_t>();
  P.so = pixel_strides(offset);
  P.msk = mask.data_ptr<scalar_t>();
  P.sm = pixel_strides(mask);
  const int Cg = geo.channels_per_group();
  P.fast = std::is_same_v<scalar_t, float> && fast_path_applies(at::kFloat, geo.C, geo.H, geo.W, groups,
                                                                 geo.offset_groups);
  if (P.fast) {
    for (int g = 0; g < geo.offset_groups; ++g) {
      const int gg = g * Cg / P.Cig;
      P.col0.push_back(int64_t(gg) * geo.K() * P.Cig + (g * Cg - gg * P.Cig));
    }
  }
  return P;
}

// Calls f(n, p0, p1, row) for the runs of the flattened pixels [q0, q1) that lie in one image n (pixels
// [p0, p1) of it); row is the block row of p0 (blocks start at qb).
template <typename F>
inline void for_segments(int64_t L, int64_t q0, int64_t q1, int64_t qb, F&& f) {
  for (int64_t q = q0; q < q1;) {
    const int64_t n = q / L, p0 = q % L, p1 = std::min(L, p0 + (q1 - q));
    f(n, p0, p1, q - qb);
    q += p1 - p0;
  }
}

// Calls f(column, channel, count) for the runs of channels [c0, c1) that are contiguous in a row at tap
// k: a run ends where a conv group ends.
template <typename F>
inline void for_runs(int c0, int c1, int k, int K, int Cig, F&& f) {
  for (int c = c0; c < c1;) {
    const int gg = c / Cig;
    const int end = std::min(c1, (gg + 1) * Cig);
    f(int64_t(gg) * K * Cig + int64_t(k) * Cig + (c - gg * Cig), c, end - c);
    c = end;
  }
}

// ---- scalar rows: any dtype, any channel count -------------------------------------------------------

// Calls f(row, k, g, by, bx, dy, dx, m, p) for each (pixel, tap, offset group) of pixels [p0, p1) of
// image n; row counts from p0.
template <typename scalar_t, typename acc_t, typename F>
inline void for_samples(const Plan<scalar_t>& P, int64_t n, int64_t p0, int64_t p1, F&& f) {
  const Geometry& geo = P.geo;
  const int K = geo.K(), G = geo.offset_groups;
  const scalar_t* off_n = P.off + n * P.so.n;
  const scalar_t* msk_n = P.msk + n * P.sm.n;
  int ho = static_cast<int>(p0 / geo.Wo), wo = static_cast<int>(p0 % geo.Wo);
  for (int64_t p = p0; p < p1; ++p) {
    for (int k = 0; k < K; ++k) {
      int by, bx;
      base_position(geo, ho, wo, k, &by, &bx);
      for (int g = 0; g < G; ++g) {
        const int oc = offset_channel(g, k, K);
        const acc_t dy = acc_t(off_n[oc * P.so.c + p * P.so.p]);
        const acc_t dx = acc_t(off_n[(oc + 1) * P.so.c + p * P.so.p]);
        const acc_t m = acc_t(msk_n[mask_channel(g, k, K) * P.sm.c + p * P.sm.p]);
        f(p - p0, k, g, by, bx, dy, dx, m, p);
      }
    }
    if (++wo == geo.Wo) {
      wo = 0;
      ++ho;
    }
  }
}

template <typename scalar_t, typename acc_t>
void gather_scalar(const Plan<scalar_t>& P, int64_t n, int64_t p0, int64_t p1, scalar_t* rows) {
  const Geometry& geo = P.geo;
  const int K = geo.K(), C = geo.C, Cg = geo.channels_per_group();
  const scalar_t* in_n = P.in + n * P.image;
  for_samples<scalar_t, acc_t>(P, n, p0, p1, [&](int64_t row, int k, int g, int by, int bx, acc_t dy, acc_t dx,
                                                 acc_t m, int64_t) {
    const Sample<acc_t> s = make_sample<acc_t>(by, bx, dy, dx, geo.H, geo.W);
    scalar_t* dst = rows + row * P.CK;
    for_runs(g * Cg, (g + 1) * Cg, k, K, P.Cig, [&](int64_t col, int c, int cnt) {
      const scalar_t* src[4];
      for (int q = 0; q < s.nv; ++q) src[q] = in_n + s.pix[q] * C + c;
      gather_row<scalar_t, acc_t>(dst + col, src, s, m, cnt);
    });
  });
}

template <typename scalar_t, typename acc_t, typename gin_t>
void backward_scalar(const Plan<scalar_t>& P, int64_t n, int64_t p0, int64_t p1, const scalar_t* grows,
                     gin_t* gin_n, scalar_t* goff_n, const PixelStrides& sgo, scalar_t* gmsk_n,
                     const PixelStrides& sgm) {
  const Geometry& geo = P.geo;
  const int K = geo.K(), C = geo.C, Cg = geo.channels_per_group();
  const scalar_t* in_n = P.in + n * P.image;
  for_samples<scalar_t, acc_t>(P, n, p0, p1, [&](int64_t row, int k, int g, int by, int bx, acc_t dy, acc_t dx,
                                                 acc_t m, int64_t p) {
    const Sample<acc_t> s = make_sample<acc_t>(by, bx, dy, dx, geo.H, geo.W);
    const scalar_t* gc = grows + row * P.CK;
    acc_t sums[3] = {acc_t(0), acc_t(0), acc_t(0)};
    if (s.nv > 0) {
      for_runs(g * Cg, (g + 1) * Cg, k, K, P.Cig, [&](int64_t col, int c, int cnt) {
        const scalar_t* src[4];
        gin_t* dst[4];
        for (int q = 0; q < s.nv; ++q) {
          src[q] = in_n + s.pix[q] * C + c;
          dst[q] = gin_n + s.pix[q] * C + c;
        }
        backward_row<scalar_t, acc_t, gin_t>(gc + col, src, dst, s, m, cnt, sums);
      });
    }
    const int oc = offset_channel(g, k, K);
    goff_n[oc * sgo.c + p * sgo.p] = static_cast<scalar_t>(m * sums[1]);
    goff_n[(oc + 1) * sgo.c + p * sgo.p] = static_cast<scalar_t>(m * sums[2]);
    gmsk_n[mask_channel(g, k, K) * sgm.c + p * sgm.p] = static_cast<scalar_t>(sums[0]);
  });
}

// ---- AVX2 rows: float, offset groups of 8k channels --------------------------------------------------
#if defined(EDVR_FAST_HAVE_AVX2)
// Every function in this region, lambdas included, is compiled for AVX2 + FMA.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

// Eight values at ptr, ptr + stride, ...; lanes past `lanes` read as 0.
EDVR_AVX2 inline __m256 load8(const float* ptr, int64_t stride, int lanes) {
  if (stride == 1 && lanes == 8) return _mm256_loadu_ps(ptr);
  alignas(32) float v[8] = {};
  for (int j = 0; j < lanes; ++j) v[j] = ptr[j * stride];
  return _mm256_load_ps(v);
}

EDVR_AVX2 inline void store8(float* ptr, int64_t stride, int lanes, __m256 x) {
  if (stride == 1 && lanes == 8) return _mm256_storeu_ps(ptr, x);
  alignas(32) float v[8];
  _mm256_store_ps(v, x);
  for (int j = 0; j < lanes; ++j) ptr[j * stride] = v[j];
}

// Calls f(plan, lanes, k, g, row, pixel) for each group of eight pixels of [p0, p1) of image n and each
// (tap, offset group) of it (row: the group's first pixel counted from p0). Pixel groups are the outer
// loop, so the corners a group reads stay in L1 over its taps and offset groups. NCHW offset and mask
// planes are first copied for the pixels of a long call (one contiguous run per plane, which the hardware
// prefetches; reading 3*G*K planes 8 pixels at a time does not); a tile (an implicit-GEMM tile, a few
// dozen pixels) reads them in place (copying, or prefetching the next tile's part, timed no faster).
template <typename F>
EDVR_AVX2 inline void for_lanes(const Plan<float>& P, int64_t n, int64_t p0, int64_t p1, bool tile, F&& f) {
  const Geometry& geo = P.geo;
  const int K = geo.K(), G = geo.offset_groups;
  const int64_t np = p1 - p0, np8 = (np + 7) / 8 * 8;
  // Whole-pixel base positions of the pixels (tap 0), padded to whole groups of eight.
  std::vector<int32_t> base(2 * np8);
  int32_t* by0 = base.data();
  int32_t* bx0 = base.data() + np8;
  int ho = static_cast<int>(p0 / geo.Wo), wo = static_cast<int>(p0 % geo.Wo);
  for (int64_t r = 0; r < np8; ++r) {
    by0[r] = ho * geo.sh - geo.ph;
    bx0[r] = wo * geo.sw - geo.pw;
    if (r + 1 < np && ++wo == geo.Wo) {  // padding lanes repeat the last pixel (they are inactive)
      wo = 0;
      ++ho;
    }
  }
  // Offsets and masks as (pointer, channel stride, pixel stride) from pixel p0 on.
  const int oc_count = 2 * G * K, mc_count = G * K;
  std::vector<float> staged;
  const auto source = [&](const float* t_n, const PixelStrides& s, int channels, int64_t at, const float** ptr,
                          int64_t* sc, int64_t* sp) {
    if (s.p != 1 || tile) {
      *ptr = t_n + p0 * s.p;
      *sc = s.c;
      *sp = s.p;
      return;
    }
    for (int ch = 0; ch < channels; ++ch) {
      std::copy(t_n + ch * s.c + p0, t_n + ch * s.c + p1, staged.data() + at + ch * np8);
    }
    *ptr = staged.data() + at;
    *sc = np8;
    *sp = 1;
  };
  if (!tile) staged.resize(((P.so.p == 1 ? oc_count : 0) + (P.sm.p == 1 ? mc_count : 0)) * np8);
  const float* offs;
  const float* msks;
  int64_t osc, osp, msc, msp;
  source(P.off + n * P.so.n, P.so, oc_count, 0, &offs, &osc, &osp);
  source(P.msk + n * P.sm.n, P.sm, mc_count, P.so.p == 1 ? oc_count * np8 : 0, &msks, &msc, &msp);
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  avx2::Plan8 plan;
  for (int64_t r = 0; r < np; r += 8) {
    const int lanes = static_cast<int>(std::min<int64_t>(8, np - r));
    const __m256i active = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), iota);
    const __m256i by_r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(by0 + r));
    const __m256i bx_r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bx0 + r));
    for (int k = 0; k < K; ++k) {
      const __m256i by = _mm256_add_epi32(by_r, _mm256_set1_epi32((k / geo.kw) * geo.dh));
      const __m256i bx = _mm256_add_epi32(bx_r, _mm256_set1_epi32((k % geo.kw) * geo.dw));
      for (int g = 0; g < G; ++g) {
        const int64_t oc = offset_channel(g, k, K), mc = mask_channel(g, k, K);
        const __m256 dy = load8(offs + oc * osc + r * osp, osp, lanes);
        const __m256 dx = load8(offs + (oc + 1) * osc + r * osp, osp, lanes);
        const __m256 m = load8(msks + mc * msc + r * msp, msp, lanes);
        avx2::plan8(by, bx, dy, dx, m, active, geo.H, geo.W, &plan);
        f(plan, lanes, k, g, r, p0 + r);
      }
    }
  }
}

EDVR_AVX2 void gather_fast(const Plan<float>& P, int64_t n, int64_t p0, int64_t p1, float* rows,
                           const float* zeros, bool tile = false) {
  const Geometry& geo = P.geo;
  const int C = geo.C, Cg = geo.channels_per_group(), V = Cg / 8;
  const float* in_n = P.in + n * P.image;
  for_lanes(P, n, p0, p1, tile, [&](avx2::Plan8& plan, int lanes, int k, int g, int64_t row, int64_t) {
    avx2::locate8(&plan, in_n + g * Cg, C, zeros, nullptr, nullptr);
    float* dst = rows + row * P.CK + P.col0[g] + int64_t(k) * P.Cig;
    if (V == 1) {
      avx2::gather8<1>(plan, lanes, 1, dst, P.CK);
    } else {
      avx2::gather8<0>(plan, lanes, V, dst, P.CK);
    }
  });
}

// grows: the column gradient rows of pixels [p0, p1); cols (may be null): where to write their column
// rows, gathered from the same corner reads (the implicit GEMM's backward needs them for grad_weight);
// tile: see for_lanes.
EDVR_AVX2 void backward_fast(const Plan<float>& P, int64_t n, int64_t p0, int64_t p1, const float* grows,
                             float* gin_n, float* goff_n, const PixelStrides& sgo, float* gmsk_n,
                             const PixelStrides& sgm, const float* zeros, float* sink, float* cols = nullptr,
                             bool tile = false) {
  const Geometry& geo = P.geo;
  const int K = geo.K(), C = geo.C, Cg = geo.channels_per_group(), V = Cg / 8;
  const float* in_n = P.in + n * P.image;
  alignas(32) float sv[8], sy[8], sx[8];
  for_lanes(P, n, p0, p1, tile, [&](avx2::Plan8& plan, int lanes, int k, int g, int64_t row, int64_t pg) {
    avx2::locate8(&plan, in_n + g * Cg, C, zeros, gin_n + g * Cg, sink);
    const int64_t at = row * P.CK + P.col0[g] + int64_t(k) * P.Cig;
    const float* gc = grows + at;
    if (cols != nullptr) {
      if (V == 1) {
        avx2::gather_backward8<1>(plan, lanes, 1, gc, cols + at, P.CK, sv, sy, sx);
      } else {
        avx2::gather_backward8<0>(plan, lanes, V, gc, cols + at, P.CK, sv, sy, sx);
      }
    } else if (V == 1) {
      avx2::backward8<1>(plan, lanes, 1, gc, P.CK, sv, sy, sx);
    } else {
      avx2::backward8<0>(plan, lanes, V, gc, P.CK, sv, sy, sx);
    }
    const __m256 m = _mm256_load_ps(plan.m);
    const int64_t oc = offset_channel(g, k, K), mc = mask_channel(g, k, K);
    store8(goff_n + oc * sgo.c + pg * sgo.p, sgo.p, lanes, _mm256_mul_ps(m, _mm256_load_ps(sy)));
    store8(goff_n + (oc + 1) * sgo.c + pg * sgo.p, sgo.p, lanes, _mm256_mul_ps(m, _mm256_load_ps(sx)));
    store8(gmsk_n + mc * sgm.c + pg * sgm.p, sgm.p, lanes, _mm256_load_ps(sv));
  });
}

// ---- implicit GEMM: float, AVX2 rows, one conv group, Co % 8 == 0 --------------------------------------
// A thread gathers one tile of column rows (kTileBytes, a few dozen pixels of one image) and multiplies it
// at once with its own register-blocked GEMM (dcn_gemm_avx2.h) while the tile is in L1/L2: the columns
// never leave the core's caches, and the threads never wait on each other or on a BLAS call.

// Output pixels [p0, p1) of image n: gather the tile, out = tile x W^T (+ bias). wt: W^T in packed panels.
EDVR_AVX2 void forward_tile(const Plan<float>& P, int64_t n, int64_t p0, int64_t p1, float* tile,
                            const float* zeros, const float* wt, int64_t Co, const float* bias, float* out,
                            const PixelStrides& so) {
  gather_fast(P, n, p0, p1, tile, zeros, true);
  avx2::gemm(p1 - p0, Co, P.CK, tile, P.CK, 1, avx2::PanelB{wt, 0, true}, out + n * so.n + p0 * so.p, so.p, so.c,
             false, bias, false);
}

// The backward of forward_tile: grad_cols = grad_out x W into gtile, then one pass over the samples that
// writes the columns into tile and scatters grad_cols into grad_input (and grad offset, mask), then
// gw += grad_out^T x tile. wg: W in packed panels (K = Co, N = C*K); gw: [Co, C*K], the worker's own.
EDVR_AVX2 void backward_tile(const Plan<float>& P, int64_t n, int64_t p0, int64_t p1, const float* go_n,
                             const PixelStrides& sg, int64_t Co, const float* wg, float* tile, float* gtile,
                             float* gin_n, float* goff_n, const PixelStrides& sgo, float* gmsk_n,
                             const PixelStrides& sgm, const float* zeros, float* sink, float* gw) {
  const int64_t np = p1 - p0;
  const float* g = go_n + p0 * sg.p;
  avx2::gemm(np, P.CK, Co, g, sg.p, sg.c, avx2::PanelB{wg, 0, true}, gtile, P.CK, 1, false, nullptr, true);
  backward_fast(P, n, p0, p1, gtile, gin_n, goff_n, sgo, gmsk_n, sgm, zeros, sink, tile, true);
  avx2::gemm(Co, P.CK, np, g, sg.c, sg.p, avx2::PanelB{tile, P.CK, false}, gw, P.CK, 1, true, nullptr, true);
}

// ---- layout changes: NCHW <-> NHWC of float feature maps, in 8x8 register blocks ---------------------

// dst[j * ds + i] = src[i * ss + j] for i, j < 8.
EDVR_AVX2 inline void transpose8x8(const float* src, int64_t ss, float* dst, int64_t ds) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ss);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

// Rows [i0, i1) of src into dst = src^T for one image: dst[j * rows + i] = src[i * cols + j], j < cols.
EDVR_AVX2 void transpose_rows(const float* src, int64_t rows, int64_t cols, int64_t i0, int64_t i1, float* dst) {
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) transpose8x8(src + i * cols + j, cols, dst + j * rows + i, rows);
    for (; j < cols; ++j) {
      for (int64_t a = i; a < i + 8; ++a) dst[j * rows + a] = src[a * cols + j];
    }
  }
  for (; i < i1; ++i) {
    for (int64_t j = 0; j < cols; ++j) dst[j * rows + i] = src[i * cols + j];
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // EDVR_FAST_HAVE_AVX2

// dst[n] = src[n]^T for n < N, src[n] a dense rows x cols float matrix (NCHW <-> NHWC of one image), in
// parallel over strips of 8 rows.
void transpose_images(const float* src, int64_t N, int64_t rows, int64_t cols, float* dst) {
  const int64_t strips = (rows + 7) / 8, grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, cols));
  at::parallel_for(0, N * strips, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / strips, i0 = (t % strips) * 8, i1 = std::min(rows, i0 + 8);
      const float* s = src + n * rows * cols;
      float* d = dst + n * rows * cols;
#if defined(EDVR_FAST_HAVE_AVX2)
      if (avx2::supported()) {
        transpose_rows(s, rows, cols, i0, i1, d);
        continue;
      }
#endif
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = 0; j < cols; ++j) d[j * rows + i] = s[i * cols + j];
      }
    }
  });
}

// t as a channels-last tensor: t itself when it is one; a float NCHW tensor by transpose_images (ATen's
// strided copy took 5x as long: BENCHMARKS.md), anything else by contiguous().
at::Tensor as_channels_last(const at::Tensor& t) {
  if (t.is_contiguous(at::MemoryFormat::ChannelsLast)) return t;
  if (t.scalar_type() != at::kFloat || !t.is_contiguous() || t.dim() != 4) {
    return t.contiguous(at::MemoryFormat::ChannelsLast);
  }
  at::Tensor out = at::empty(t.sizes(), t.options().memory_format(at::MemoryFormat::ChannelsLast));
  transpose_images(t.data_ptr<float>(), t.size(0), t.size(1), t.size(2) * t.size(3), out.data_ptr<float>());
  return out;
}

// g: [N, H, W, C] dense, as an [N, C, H, W] tensor of `options` in `fmt` (grad_input).
at::Tensor from_nhwc(const at::Tensor& g, const at::TensorOptions& options, at::MemoryFormat fmt) {
  const at::Tensor nchw_view = g.permute({0, 3, 1, 2});
  if (fmt != at::MemoryFormat::Contiguous || g.scalar_type() != at::kFloat ||
      options.dtype().toScalarType() != at::kFloat) {
    return nchw_view.to(options, false, false, fmt);
  }
  at::Tensor out = at::empty(nchw_view.sizes(), options);
  transpose_images(g.data_ptr<float>(), g.size(0), g.size(1) * g.size(2), g.size(3), out.data_ptr<float>());
  return out;
}

template <typename scalar_t, typename acc_t>
void gather(const Plan<scalar_t>& P, int64_t n, int64_t p0, int64_t p1, scalar_t* rows, const float* zeros) {
#if defined(EDVR_FAST_HAVE_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (P.fast) return gather_fast(P, n, p0, p1, rows, zeros);
  }
#endif
  (void)zeros;
  gather_scalar<scalar_t, acc_t>(P, n, p0, p1, rows);
}

// The column rows of the flattened pixels [qb, qe) (a block) into cols, chunks of `rows` in parallel.
template <typename scalar_t, typename acc_t>
void gather_block(const Plan<scalar_t>& P, int64_t L, int64_t qb, int64_t qe, int64_t rows, scalar_t* cols,
                  const float* zeros) {
  at::parallel_for(0, (qe - qb + rows - 1) / rows, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t q0 = qb + c * rows, q1 = std::min(qe, q0 + rows);
      for_segments(L, q0, q1, qb, [&](int64_t n, int64_t p0, int64_t p1, int64_t row) {
        gather<scalar_t, acc_t>(P, n, p0, p1, cols + row * P.CK, zeros);
      });
    }
  });
}

template <typename scalar_t, typename acc_t, typename gin_t>
void backward_rows(const Plan<scalar_t>& P, int64_t n, int64_t p0, int64_t p1, const scalar_t* grows, gin_t* gin_n,
                   scalar_t* goff_n, const PixelStrides& sgo, scalar_t* gmsk_n, const PixelStrides& sgm,
                   const float* zeros, float* sink) {
#if defined(EDVR_FAST_HAVE_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (P.fast) return backward_fast(P, n, p0, p1, grows, gin_n, goff_n, sgo, gmsk_n, sgm, zeros, sink);
  }
#endif
  (void)zeros;
  (void)sink;
  backward_scalar<scalar_t, acc_t, gin_t>(P, n, p0, p1, grows, gin_n, goff_n, sgo, gmsk_n, sgm);
}

// ---- blocks ------------------------------------------------------------------------------------------

// Rows of one chunk: a multiple of 8 near kChunkBytes of columns.
int64_t rows_per_chunk(int64_t CK, int64_t elem) {
  const int64_t rows = kChunkBytes / std::max<int64_t>(1, CK * elem);
  return std::max<int64_t>(8, rows / 8 * 8);
}

// Rows of a block: whole chunks, the same number for each worker, and at least kMinBlockRows.
int64_t rows_per_block(int64_t rows, int64_t workers) {
  return rows * workers * std::max<int64_t>(1, (kMinBlockRows + rows * workers - 1) / (rows * workers));
}

// [N, C, H, W] as [N, H*W, C] (a view for contiguous and channels-last tensors).
at::Tensor pixels_by_channels(const at::Tensor& t) {
  return t.permute({0, 2, 3, 1}).view({t.size(0), t.size(2) * t.size(3), t.size(1)});
}

// Weight [Co, Cig, kh, kw] as [groups, Cog, K*Cig], columns ordered (tap, channel) like a row.
at::Tensor weight_by_tap(const at::Tensor& weight, int64_t groups) {
  const int64_t Co = weight.size(0);
  return weight.permute({0, 2, 3, 1}).contiguous().view({groups, Co / groups, -1});
}

// Calls f(rows_of_pixels [n_rows, Co] view, block row, count) for the GEMM-sized pieces of the flattened
// pixels [qb, qe) of t_lc ([N, L, Co]): the whole block at once when t is channels-last dense.
template <typename F>
void for_gemm_pieces(const at::Tensor& t_lc, bool dense, int64_t L, int64_t qb, int64_t qe, F&& f) {
  if (dense) {
    f(t_lc.view({-1, t_lc.size(2)}).narrow(0, qb, qe - qb), int64_t(0), qe - qb);
    return;
  }
  for_segments(L, qb, qe, qb, [&](int64_t n, int64_t p0, int64_t p1, int64_t row) {
    f(t_lc[n].narrow(0, p0, p1 - p0), row, p1 - p0);
  });
}

bool channels_last_dense(const at::Tensor& t) {
  return t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

bool fast_path_applies(at::ScalarType st, int64_t C, int64_t H, int64_t W, int64_t groups, int64_t offset_groups) {
#if defined(EDVR_FAST_HAVE_AVX2)
  if (st != at::kFloat || groups <= 0 || offset_groups <= 0 || C % groups != 0 || C % offset_groups != 0) return false;
  const int64_t Cg = C / offset_groups, Cig = C / groups;
  return Cg % 8 == 0 && Cig % Cg == 0 && (H + 1) * (W + 1) < (int64_t(1) << 31) && avx2::supported();
#else
  (void)st, (void)C, (void)H, (void)W, (void)groups, (void)offset_groups;
  return false;
#endif
}

#if defined(EDVR_FAST_HAVE_AVX2)
// Rows of an implicit-GEMM tile: whole blocks of 24 (three groups of 8 gather lanes, four blocks of 6 GEMM
// rows) near kTileBytes of columns.
constexpr int64_t kTileBytes = int64_t(64) << 10;

int64_t tile_rows(int64_t CK) {
  return std::clamp<int64_t>(kTileBytes / (CK * int64_t(sizeof(float))) / 24 * 24, 24, 240);
}

// The tiles of the output pixels: runs of `rows` pixels of one image (a tile never spans two images).
struct Tiling {
  int64_t L, rows, per_image, count;
  Tiling(int64_t L_, int64_t N, int64_t CK)
      : L(L_), rows(tile_rows(CK)), per_image((L_ + rows - 1) / rows), count(N * per_image) {}
  void at(int64_t t, int64_t* n, int64_t* p0, int64_t* p1) const {
    *n = t / per_image;
    *p0 = (t % per_image) * rows;
    *p1 = std::min(L, *p0 + rows);
  }
};

bool implicit_gemm_applies(const Plan<float>& P, int64_t groups, int64_t Co) {
  return P.fast && groups == 1 && Co % 8 == 0;
}

// w: [1, Co, C*K] (weight_by_tap); b: undefined or [Co]; out: [N, Co, Ho, Wo], NCHW or NHWC dense.
void implicit_forward_float(const Plan<float>& P, const at::Tensor& w, const at::Tensor& b, const at::Tensor& out) {
  const int64_t N = out.size(0), Co = out.size(1);
  const Tiling T(P.geo.L(), N, P.CK);
  std::vector<float> wt(size_t(P.CK * Co));
  avx2::pack_panels(w.data_ptr<float>(), 1, P.CK, P.CK, Co, wt.data());  // B(k, j) = W[j][k]
  const at::Tensor bc = b.defined() ? b.contiguous() : b;
  const float* bias = bc.defined() ? bc.data_ptr<float>() : nullptr;
  const PixelStrides so = pixel_strides(out);
  float* out_p = out.data_ptr<float>();
  const std::vector<float> zeros(std::max(8, P.geo.C), 0.0f);
  at::parallel_for(0, T.count, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> tile(size_t(T.rows * P.CK));
    for (int64_t t = t0; t < t1; ++t) {
      int64_t n, p0, p1;
      T.at(t, &n, &p0, &p1);
      forward_tile(P, n, p0, p1, tile.data(), zeros.data(), wt.data(), Co, bias, out_p, so);
    }
  });
}

// go: [N, Co, Ho, Wo] float, NCHW or NHWC dense; gin: [N, H, W, C] zeros; gw: [1, Co, C*K] zeros. Worker u
// of U takes the tiles [u*T/U, (u+1)*T/U) and writes grad_input and grad_weight into its own buffers,
// summed in worker order at the end: the result depends on the shape and the thread count only.
void implicit_backward_float(const Plan<float>& P, const at::Tensor& w, const at::Tensor& go, const at::Tensor& gin,
                             const at::Tensor& grad_offset, const at::Tensor& grad_mask, const at::Tensor& gw) {
  const int64_t N = go.size(0), Co = go.size(1), CK = P.CK;
  const Tiling T(P.geo.L(), N, CK);
  std::vector<float> wg(size_t(Co * CK));
  avx2::pack_panels(w.data_ptr<float>(), CK, 1, Co, CK, wg.data());  // B(k, j) = W[k][j]
  const int64_t U = std::min({kMaxBackwardWorkers, std::max<int64_t>(1, at::get_num_threads()), T.count});
  const at::Tensor gin_priv = U > 1 ? at::zeros({U - 1, N * P.image}, gin.options()) : at::Tensor();
  const at::Tensor gw_priv = U > 1 ? at::zeros({U - 1, Co * CK}, gw.options()) : at::Tensor();
  const PixelStrides sg = pixel_strides(go), sgo = pixel_strides(grad_offset), sgm = pixel_strides(grad_mask);
  const float* go_p = go.data_ptr<float>();
  float* goff = grad_offset.data_ptr<float>();
  float* gmsk = grad_mask.data_ptr<float>();
  const std::vector<float> zeros(std::max(8, P.geo.C), 0.0f);
  at::parallel_for(0, U, 1, [&](int64_t u0, int64_t u1) {
    std::vector<float> tile(size_t(T.rows * CK)), gtile(tile.size()), sink(size_t(std::max(8, P.geo.C)));
    for (int64_t u = u0; u < u1; ++u) {
      float* gin_u = u == 0 ? gin.data_ptr<float>() : gin_priv[u - 1].data_ptr<float>();
      float* gw_u = u == 0 ? gw.data_ptr<float>() : gw_priv[u - 1].data_ptr<float>();
      for (int64_t t = u * T.count / U; t < (u + 1) * T.count / U; ++t) {
        int64_t n, p0, p1;
        T.at(t, &n, &p0, &p1);
        backward_tile(P, n, p0, p1, go_p + n * sg.n, sg, Co, wg.data(), tile.data(), gtile.data(),
                      gin_u + n * P.image, goff + n * sgo.n, sgo, gmsk + n * sgm.n, sgm, zeros.data(), sink.data(),
                      gw_u);
      }
    }
  });
  for (int64_t c = 0; c + 1 < U; ++c) {
    gin.view({-1}).add_(gin_priv[c]);
    gw.view({-1}).add_(gw_priv[c]);
  }
}
#endif  // EDVR_FAST_HAVE_AVX2

// The implicit GEMM forward / backward where it applies (true), else nothing (false).
template <typename scalar_t>
bool implicit_forward(const Plan<scalar_t>& P, int64_t groups, const at::Tensor& w, const at::Tensor& b,
                      const at::Tensor& out) {
#if defined(EDVR_FAST_HAVE_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (!implicit_gemm_applies(P, groups, out.size(1))) return false;
    implicit_forward_float(P, w, b, out);
    return true;
  }
#endif
  (void)P, (void)groups, (void)w, (void)b, (void)out;
  return false;
}

template <typename scalar_t>
bool implicit_backward(const Plan<scalar_t>& P, int64_t groups, const at::Tensor& w, const at::Tensor& go,
                       const at::Tensor& gin, const at::Tensor& grad_offset, const at::Tensor& grad_mask,
                       const at::Tensor& gw) {
#if defined(EDVR_FAST_HAVE_AVX2)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (!implicit_gemm_applies(P, groups, go.size(1))) return false;
    implicit_backward_float(P, w, go, gin, grad_offset, grad_mask, gw);
    return true;
  }
#endif
  (void)P, (void)groups, (void)w, (void)go, (void)gin, (void)grad_offset, (void)grad_mask, (void)gw;
  return false;
}

}  // namespace

bool has_fast_path(const at::Tensor& input, int64_t groups, int64_t offset_groups) {
  return input.dim() == 4 &&
         fast_path_applies(input.scalar_type(), input.size(1), input.size(2), input.size(3), groups, offset_groups);
}

at::Tensor forward(const at::Tensor& input, const at::Tensor& offset_, const at::Tensor& mask_,
                   const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t offset_groups) {
  const Geometry geo =
      check_args("CPU", at::kCPU, input, offset_, mask_, weight, stride, padding, dilation, groups, offset_groups);
  const at::MemoryFormat fmt = layout_of(input);
  const at::Tensor in = as_channels_last(input);  // no copy when channels-last
  const at::Tensor offset = pixel_uniform(offset_), mask = pixel_uniform(mask_);
  const int64_t N = input.size(0), Co = weight.size(0), L = geo.L(), Cog = Co / groups;
  at::Tensor out = at::empty({N, Co, geo.Ho, geo.Wo}, input.options().memory_format(fmt));
  if (N == 0) return out;
  const at::Tensor w = weight_by_tap(weight, groups);
  const bool has_bias = bias.has_value() && bias->defined();
  const at::Tensor b = has_bias ? bias->to(input.scalar_type()) : at::Tensor();
  const at::Tensor out_lc = pixels_by_channels(out);
  const bool dense = channels_last_dense(out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "edvr_dcn_nhwc_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Plan<scalar_t> P = make_plan<scalar_t>(geo, groups, in, offset, mask);
    if (implicit_forward(P, groups, w, b, out)) return;
    const int64_t total = N * L, KCg = P.CK / groups;
    const int64_t rows = rows_per_chunk(P.CK, sizeof(scalar_t));
    const int64_t block = rows_per_block(rows, std::max<int64_t>(1, at::get_num_threads()));
    at::Tensor cols = at::empty({std::min(block, total), P.CK}, in.options());
    scalar_t* cols_p = cols.data_ptr<scalar_t>();
    const std::vector<float> zeros(std::max(8, geo.C), 0.0f);
    for (int64_t qb = 0; qb < total; qb += block) {
      const int64_t qe = std::min(total, qb + block);
      gather_block<scalar_t, acc_t>(P, L, qb, qe, rows, cols_p, zeros.data());
      for_gemm_pieces(out_lc, dense, L, qb, qe, [&](const at::Tensor& o, int64_t row, int64_t cnt) {
        const at::Tensor c = cols.narrow(0, row, cnt);
        for (int64_t gg = 0; gg < groups; ++gg) {
          at::Tensor dst = o.narrow(1, gg * Cog, Cog);
          const at::Tensor a = c.narrow(1, gg * KCg, KCg);
          if (has_bias) {
            at::addmm_out(dst, b.narrow(0, gg * Cog, Cog), a, w[gg].t());
          } else {
            at::mm_out(dst, a, w[gg].t());
          }
        }
      });
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out_, const at::Tensor& input, const at::Tensor& offset_, const at::Tensor& mask_,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t offset_groups) {
  const Geometry geo =
      check_args("CPU", at::kCPU, input, offset_, mask_, weight, stride, padding, dilation, groups, offset_groups);
  const int64_t N = input.size(0), C = geo.C, Co = weight.size(0), L = geo.L(), Cog = Co / groups;
  check_grad_output(grad_out_, N, Co, geo);
  const at::ScalarType st = input.scalar_type();
  const at::ScalarType acc_st = st == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor go = grad_out_.to(st);
  if (!go.is_contiguous() && !go.is_contiguous(at::MemoryFormat::ChannelsLast)) go = go.contiguous(layout_of(input));
  const at::Tensor in = as_channels_last(input);
  const at::Tensor offset = pixel_uniform(offset_), mask = pixel_uniform(mask_);
  const at::Tensor w = weight_by_tap(weight, groups);
  at::Tensor gin = at::zeros({N, geo.H, geo.W, C}, input.options().dtype(acc_st));
  at::Tensor grad_offset = at::empty(offset_.sizes(), offset_.options().memory_format(layout_of(offset_)));
  at::Tensor grad_mask = at::empty(mask_.sizes(), mask_.options().memory_format(layout_of(mask_)));
  const int64_t KCg = int64_t(C / groups) * geo.K();
  at::Tensor gw = at::zeros({groups, Cog, KCg}, weight.options().dtype(acc_st));
  const at::Tensor grad_bias = sum_over(go, {0, 2, 3}, acc_st);
  if (N > 0) {
    const at::Tensor go_lc = pixels_by_channels(go);
    const bool dense = channels_last_dense(go);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, st, "edvr_dcn_nhwc_bwd_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      using gin_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
      const Plan<scalar_t> P = make_plan<scalar_t>(geo, groups, in, offset, mask);
      if (implicit_backward(P, groups, w, go, gin, grad_offset, grad_mask, gw)) return;
      const int64_t total = N * L;
      const int64_t rows = rows_per_chunk(P.CK, sizeof(scalar_t));
      // Worker u scatters chunks u, u + U, ... of every block into its own grad_input buffer, in order.
      const int64_t U = std::min<int64_t>(kMaxBackwardWorkers, std::max<int64_t>(1, at::get_num_threads()));
      const int64_t block = rows_per_block(rows, U);
      const int64_t used = std::min(U, (std::min(block, total) + rows - 1) / rows);  // buffers in use
      at::Tensor priv = used > 1 ? at::zeros({used - 1, N * P.image}, gin.options()) : at::Tensor();
      at::Tensor cols = at::empty({std::min(block, total), P.CK}, in.options());
      at::Tensor gcols = at::empty_like(cols);
      scalar_t* cols_p = cols.data_ptr<scalar_t>();
      const scalar_t* gcols_p = gcols.data_ptr<scalar_t>();
      gin_t* gin_p = gin.data_ptr<gin_t>();
      gin_t* priv_p = used > 1 ? priv.data_ptr<gin_t>() : nullptr;
      const PixelStrides sgo = pixel_strides(grad_offset), sgm = pixel_strides(grad_mask);
      scalar_t* goff = grad_offset.data_ptr<scalar_t>();
      scalar_t* gmsk = grad_mask.data_ptr<scalar_t>();
      const std::vector<float> zeros(std::max(8, geo.C), 0.0f);
      for (int64_t qb = 0; qb < total; qb += block) {
        const int64_t qe = std::min(total, qb + block), n_chunks = (qe - qb + rows - 1) / rows;
        gather_block<scalar_t, acc_t>(P, L, qb, qe, rows, cols_p, zeros.data());
        for_gemm_pieces(go_lc, dense, L, qb, qe, [&](const at::Tensor& g_rows, int64_t row, int64_t cnt) {
          const at::Tensor c = cols.narrow(0, row, cnt);
          const at::Tensor gc = gcols.narrow(0, row, cnt);
          for (int64_t gg = 0; gg < groups; ++gg) {
            const at::Tensor gog = g_rows.narrow(1, gg * Cog, Cog);
            const at::Tensor cg = c.narrow(1, gg * KCg, KCg);
            if constexpr (std::is_same_v<scalar_t, acc_t>) {
              gw[gg].addmm_(gog.t(), cg);
            } else {  // 16-bit: the block's product in 16 bits, accumulated in fp32
              gw[gg].add_(at::mm(gog.t(), cg));
            }
            at::Tensor dst = gc.narrow(1, gg * KCg, KCg);
            at::mm_out(dst, gog, w[gg]);
          }
        });
        at::parallel_for(0, std::min(U, n_chunks), 1, [&](int64_t u0, int64_t u1) {
          std::vector<float> sink(std::max(8, geo.C));
          for (int64_t u = u0; u < u1; ++u) {
            gin_t* target = u == 0 ? gin_p : priv_p + (u - 1) * N * P.image;
            for (int64_t c = u; c < n_chunks; c += U) {
            const int64_t q0 = qb + c * rows, q1 = std::min(qe, q0 + rows);
            for_segments(L, q0, q1, qb, [&](int64_t n, int64_t p0, int64_t p1, int64_t row) {
              backward_rows<scalar_t, acc_t, gin_t>(P, n, p0, p1, gcols_p + row * P.CK, target + n * P.image,
                                                    goff + n * sgo.n, sgo, gmsk + n * sgm.n, sgm, zeros.data(),
                                                    sink.data());
            });
            }
          }
        });
      }
      // Fixed-order reduction of the workers' grad_input buffers.
      for (int64_t c = 0; c + 1 < used; ++c) gin.view({-1}).add_(priv[c]);
    });
  }
  const at::Tensor grad_input = from_nhwc(gin, input.options(), layout_of(input));
  const at::Tensor grad_weight = gw.view({Co, geo.kh, geo.kw, C / groups}).permute({0, 3, 1, 2}).to(
      weight.options(), false, false, at::MemoryFormat::Contiguous);
  return {grad_input, grad_offset, grad_mask, grad_weight, grad_bias.to(weight.scalar_type())};
}

}  // namespace nhwc
}  // namespace dcn
}  // namespace edvr_fast

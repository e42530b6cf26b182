// Register-blocked float GEMM (AVX2 + FMA) for the implicit GEMM of the NHWC CPU kernel: the three products
// of a DCN (forward out = cols x W^T, backward grad_cols = grad_out x W, grad_weight += grad_out^T x cols)
// run on a thread's own tile of columns while it is still in cache, with no packing of the tile (the
// gather writes it in the order the kernel reads it) and no BLAS call inside the parallel region.
//
//   C[i][j] = init + sum_{k < K} A(i, k) * B(k, j),   A(i, k) = a[i*ari + k*ark] (any strides),
//                                                     B(k, j) = b[k*brk + j] within a panel of 8 or 16 columns,
//                                                     C(i, j) = c[i*cri + j*crj]; init: C itself, bias[j] or 0.
//
// Blocks of 6 rows x 16 columns keep 12 accumulators in registers: per k two loads of B, six broadcasts of
// A and twelve FMAs. The sum over k runs in order, one FMA per term, so a result does not depend on the
// tiling, the thread count or the run. No Torch types: tests/cpp/test_dcn_avx2.cpp checks gemm() against
// a double loop at every tail size and layout.
#pragma once

#include "ops/cpu/dcn_lanes_avx2.h"

#if defined(EDVR_FAST_HAVE_AVX2)
#include <algorithm>

namespace edvr_fast {
namespace dcn {
namespace avx2 {

// B of a GEMM: panels of 16 columns (the last may have 8). Packed: panel j0 is a dense [K][width] block at
// p + j0 * K (pack_panels writes it). Not packed: B(k, j) at p[k * rk + j].
struct PanelB {
  const float* p;
  int64_t rk;
  bool packed;
};

// dst gets B(k, j) = src[k * srk + j * srj] for k < K, j < N (N % 8 == 0) in the packed panel layout.
inline void pack_panels(const float* src, int64_t srk, int64_t srj, int64_t K, int64_t N, float* dst) {
  for (int64_t j0 = 0; j0 < N; j0 += 16) {
    const int64_t width = std::min<int64_t>(16, N - j0);
    float* d = dst + j0 * K;
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t j = 0; j < width; ++j) d[k * width + j] = src[k * srk + (j0 + j) * srj];
    }
  }
}

// One block: C[i][j] for i < MR, j < 8*NV. The accumulators are only indexed by constants (every loop over
// them is unrolled), so that they stay in registers; a strided C goes through tmp.
template <int MR, int NV>
EDVR_AVX2 inline void micro(const float* a, int64_t ari, int64_t ark, const float* b, int64_t brk, int64_t K,
                            float* c, int64_t cri, int64_t crj, bool accumulate, const float* bias) {
  alignas(32) float tmp[MR][8 * NV];  // only for a strided C (not cleared on the direct path)
  const bool direct = crj == 1;
  if (!direct) {
    for (int i = 0; i < MR; ++i) {
      for (int j = 0; j < 8 * NV; ++j) tmp[i][j] = accumulate ? c[i * cri + j * crj] : 0.0f;
    }
  }
  __m256 acc[MR][NV];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      if (accumulate) {
        acc[i][v] = direct ? _mm256_loadu_ps(c + i * cri + 8 * v) : _mm256_load_ps(&tmp[i][8 * v]);
      } else {
        acc[i][v] = bias != nullptr ? _mm256_loadu_ps(bias + 8 * v) : _mm256_setzero_ps();
      }
    }
  }
  const float* ap[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) ap[i] = a + i * ari;
  int64_t ka = 0;
  for (int64_t k = 0; k < K; ++k, ka += ark, b += brk) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = NV == 2 ? _mm256_loadu_ps(b + 8) : b0;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 x = _mm256_broadcast_ss(ap[i] + ka);
      acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
      if (NV == 2) acc[i][NV - 1] = _mm256_fmadd_ps(x, b1, acc[i][NV - 1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      if (direct) {
        _mm256_storeu_ps(c + i * cri + 8 * v, acc[i][v]);
      } else {
        _mm256_store_ps(&tmp[i][8 * v], acc[i][v]);
      }
    }
  }
  if (!direct) {
    for (int i = 0; i < MR; ++i) {
      for (int j = 0; j < 8 * NV; ++j) c[i * cri + j * crj] = tmp[i][j];
    }
  }
}

template <int NV>
EDVR_AVX2 inline void micro_rows(int mr, const float* a, int64_t ari, int64_t ark, const float* b, int64_t brk,
                                 int64_t K, float* c, int64_t cri, int64_t crj, bool accumulate, const float* bias) {
  switch (mr) {
    case 6: return micro<6, NV>(a, ari, ark, b, brk, K, c, cri, crj, accumulate, bias);
    case 5: return micro<5, NV>(a, ari, ark, b, brk, K, c, cri, crj, accumulate, bias);
    case 4: return micro<4, NV>(a, ari, ark, b, brk, K, c, cri, crj, accumulate, bias);
    case 3: return micro<3, NV>(a, ari, ark, b, brk, K, c, cri, crj, accumulate, bias);
    case 2: return micro<2, NV>(a, ari, ark, b, brk, K, c, cri, crj, accumulate, bias);
    default: return micro<1, NV>(a, ari, ark, b, brk, K, c, cri, crj, accumulate, bias);
  }
}

// C[M x N] (= or +=) A[M x K] B[K x N] for N % 8 == 0, M, K >= 0. columns_outer: walk B's panels in the
// outer loop (each panel stays in L1 while all of A passes: for a small A), else A's row blocks (each
// block stays in L1 while all of B passes).
EDVR_AVX2 inline void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t ari, int64_t ark, PanelB B,
                           float* c, int64_t cri, int64_t crj, bool accumulate, const float* bias,
                           bool columns_outer) {
  const auto block = [&](int64_t i0, int64_t j0) {
    const int mr = static_cast<int>(std::min<int64_t>(6, M - i0));
    const int64_t width = std::min<int64_t>(16, N - j0);
    const float* bp = B.packed ? B.p + j0 * K : B.p + j0;
    const int64_t brk = B.packed ? width : B.rk;
    const float* ai = a + i0 * ari;
    float* ci = c + i0 * cri + j0 * crj;
    const float* bj = bias != nullptr ? bias + j0 : nullptr;
    if (width == 16) {
      micro_rows<2>(mr, ai, ari, ark, bp, brk, K, ci, cri, crj, accumulate, bj);
    } else {
      micro_rows<1>(mr, ai, ari, ark, bp, brk, K, ci, cri, crj, accumulate, bj);
    }
  };
  if (columns_outer) {
    for (int64_t j0 = 0; j0 < N; j0 += 16) {
      for (int64_t i0 = 0; i0 < M; i0 += 6) block(i0, j0);
    }
  } else {
    for (int64_t i0 = 0; i0 < M; i0 += 6) {
      for (int64_t j0 = 0; j0 < N; j0 += 16) block(i0, j0);
    }
  }
}

}  // namespace avx2
}  // namespace dcn
}  // namespace edvr_fast

#endif  // EDVR_FAST_HAVE_AVX2

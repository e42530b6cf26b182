// AVX2 + FMA bodies of the NHWC CPU kernel for float: eight output pixels of one (tap, offset group) at a
// time. plan8() finds the four bilinear corners and weights of the eight sample points in vector registers
// by exactly the rules of corners() (ops/cuda/modulated_deform_conv_math.cuh); gather8() and backward8()
// then read and write each point's channels as runs of 8 contiguous floats. Out-of-image corners read a
// zero row and write a sink row (locate8), so no sample branches. No Torch types: tests/cpp/test_dcn_avx2.cpp checks
// plan8() against corners() and the bodies against plain loops. Only built on x86-64 (GCC/Clang), used
// only where the CPU has AVX2 and FMA (supported()).
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EDVR_FAST_HAVE_AVX2 1

#include <immintrin.h>

#include <cstdint>

#define EDVR_AVX2 __attribute__((target("avx2,fma")))

namespace edvr_fast {
namespace dcn {
namespace avx2 {

inline bool supported() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

// The eight sample points of one (tap, offset group) at eight output pixels (lanes).
struct Plan8 {
  alignas(32) int32_t idx[4][8];  // y * W + x of corner q (order (y0,x0), (y0,x1), (y1,x0), (y1,x1)), -1 if invalid
  alignas(32) float w[4][8];      // bilinear weight of corner q, 0 where invalid
  alignas(32) float mw[4][8];     // the same times the lane's mask
  alignas(32) float ly[8];        // fractional parts, 0 when the point is outside (as corners())
  alignas(32) float lx[8];
  alignas(32) float m[8];         // the lane's mask
  // With bases (locate8): the address of corner q's first channel, or the zero (sink) row if invalid.
  alignas(32) const float* src[4][8];
  alignas(32) float* dst[4][8];
};

// Fills p->src (and p->dst when gin is given) from p->idx: base + idx * C, or zeros / sink where idx < 0.
EDVR_AVX2 inline void locate8(Plan8* p, const float* base, int64_t C, const float* zeros, float* gin, float* sink) {
  const __m256i stride = _mm256_set1_epi64x(C * int64_t(sizeof(float)));
  const __m256i b = _mm256_set1_epi64x(reinterpret_cast<int64_t>(base));
  const __m256i z = _mm256_set1_epi64x(reinterpret_cast<int64_t>(zeros));
  const __m256i gb = _mm256_set1_epi64x(reinterpret_cast<int64_t>(gin));
  const __m256i sk = _mm256_set1_epi64x(reinterpret_cast<int64_t>(sink));
  for (int q = 0; q < 4; ++q) {
    const __m256i idx = _mm256_load_si256(reinterpret_cast<const __m256i*>(p->idx[q]));
    for (int h = 0; h < 2; ++h) {
      const __m128i part = h == 0 ? _mm256_castsi256_si128(idx) : _mm256_extracti128_si256(idx, 1);
      const __m256i i64 = _mm256_cvtepi32_epi64(part);
      const __m256i invalid = _mm256_cmpgt_epi64(_mm256_setzero_si256(), i64);
      const __m256i bytes = _mm256_mul_epi32(i64, stride);  // low 32 bits signed x stride (< 2^31)
      _mm256_store_si256(reinterpret_cast<__m256i*>(&p->src[q][4 * h]),
                         _mm256_blendv_epi8(_mm256_add_epi64(b, bytes), z, invalid));
      if (gin != nullptr) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(&p->dst[q][4 * h]),
                           _mm256_blendv_epi8(_mm256_add_epi64(gb, bytes), sk, invalid));
      }
    }
  }
}

// by, bx: whole-pixel base positions of the lanes; dy, dx: their learned offsets; m: masks; active: all
// bits set for the lanes in use. Inactive lanes get no valid corner.
EDVR_AVX2 inline void plan8(__m256i by, __m256i bx, __m256 dy, __m256 dx, __m256 m, __m256i active, int H, int W,
                            Plan8* p) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256i minus1 = _mm256_set1_epi32(-1);
  const __m256 fy = _mm256_floor_ps(dy), fx = _mm256_floor_ps(dx);
  __m256 ly = _mm256_sub_ps(dy, fy), lx = _mm256_sub_ps(dx, fx);
  // Coarse range check first (NaN fails it, as does an offset too large for an int).
  const __m256 y = _mm256_add_ps(_mm256_cvtepi32_ps(by), dy), x = _mm256_add_ps(_mm256_cvtepi32_ps(bx), dx);
  __m256 in = _mm256_and_ps(_mm256_cmp_ps(y, _mm256_set1_ps(-2.0f), _CMP_GT_OQ),
                            _mm256_cmp_ps(y, _mm256_set1_ps(float(H + 1)), _CMP_LT_OQ));
  in = _mm256_and_ps(in, _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-2.0f), _CMP_GT_OQ),
                                       _mm256_cmp_ps(x, _mm256_set1_ps(float(W + 1)), _CMP_LT_OQ)));
  __m256i inside = _mm256_and_si256(_mm256_castps_si256(in), active);
  // Integer corner (0 outside, like corners(); the conversion of a huge value is masked away).
  const __m256i y0 = _mm256_and_si256(_mm256_add_epi32(by, _mm256_cvttps_epi32(fy)), inside);
  const __m256i x0 = _mm256_and_si256(_mm256_add_epi32(bx, _mm256_cvttps_epi32(fx)), inside);
  // The exact DCNv2 rule: -1 < y < H and -1 < x < W.
  const __m256i ly_pos = _mm256_castps_si256(_mm256_cmp_ps(ly, zero, _CMP_GT_OQ));
  const __m256i lx_pos = _mm256_castps_si256(_mm256_cmp_ps(lx, zero, _CMP_GT_OQ));
  const __m256i ok_y = _mm256_and_si256(
      _mm256_or_si256(_mm256_cmpgt_epi32(y0, minus1), _mm256_and_si256(_mm256_cmpeq_epi32(y0, minus1), ly_pos)),
      _mm256_cmpgt_epi32(_mm256_set1_epi32(H), y0));
  const __m256i ok_x = _mm256_and_si256(
      _mm256_or_si256(_mm256_cmpgt_epi32(x0, minus1), _mm256_and_si256(_mm256_cmpeq_epi32(x0, minus1), lx_pos)),
      _mm256_cmpgt_epi32(_mm256_set1_epi32(W), x0));
  inside = _mm256_and_si256(inside, _mm256_and_si256(ok_y, ok_x));
  const __m256 inside_f = _mm256_castsi256_ps(inside);
  ly = _mm256_and_ps(ly, inside_f);
  lx = _mm256_and_ps(lx, inside_f);
  const __m256 hy = _mm256_sub_ps(one, ly), hx = _mm256_sub_ps(one, lx);
  const __m256i vy0 = _mm256_cmpgt_epi32(y0, minus1);                            // y0 >= 0
  const __m256i vy1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(H - 1), y0);          // y0 + 1 <= H - 1
  const __m256i vx0 = _mm256_cmpgt_epi32(x0, minus1);
  const __m256i vx1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(W - 1), x0);
  const __m256i valid[4] = {_mm256_and_si256(inside, _mm256_and_si256(vy0, vx0)),
                            _mm256_and_si256(inside, _mm256_and_si256(vy0, vx1)),
                            _mm256_and_si256(inside, _mm256_and_si256(vy1, vx0)),
                            _mm256_and_si256(inside, _mm256_and_si256(vy1, vx1))};
  const __m256 ws[4] = {_mm256_mul_ps(hy, hx), _mm256_mul_ps(hy, lx), _mm256_mul_ps(ly, hx), _mm256_mul_ps(ly, lx)};
  const __m256i base = _mm256_add_epi32(_mm256_mullo_epi32(y0, _mm256_set1_epi32(W)), x0);
  const __m256i delta[4] = {_mm256_setzero_si256(), _mm256_set1_epi32(1), _mm256_set1_epi32(W),
                            _mm256_set1_epi32(W + 1)};
  for (int q = 0; q < 4; ++q) {
    const __m256 wq = _mm256_and_ps(ws[q], _mm256_castsi256_ps(valid[q]));
    _mm256_store_ps(p->w[q], wq);
    _mm256_store_ps(p->mw[q], _mm256_mul_ps(wq, m));
    _mm256_store_si256(reinterpret_cast<__m256i*>(p->idx[q]),
                       _mm256_blendv_epi8(minus1, _mm256_add_epi32(base, delta[q]), valid[q]));
  }
  _mm256_store_ps(p->ly, ly);
  _mm256_store_ps(p->lx, lx);
  _mm256_store_ps(p->m, m);
}

// The horizontal sums of eight vectors, as one vector (lane j: the sum of v[j]), in a fixed order.
EDVR_AVX2 inline __m256 hsum8(const __m256* v) {
  const __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  const __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// dst + j*row_stride gets, for lanes j < lanes, the masked bilinear sample of 8*V channels at the corners
// that locate8 found (V_fixed > 0: V known at compile time).
template <int V_fixed>
EDVR_AVX2 inline void gather8(const Plan8& p, int lanes, int V_, float* dst, int64_t row_stride) {
  const int V = V_fixed > 0 ? V_fixed : V_;
  for (int j = 0; j < lanes; ++j) {
    const float* c0 = p.src[0][j];
    const float* c1 = p.src[1][j];
    const float* c2 = p.src[2][j];
    const float* c3 = p.src[3][j];
    const __m256 w0 = _mm256_broadcast_ss(&p.mw[0][j]), w1 = _mm256_broadcast_ss(&p.mw[1][j]);
    const __m256 w2 = _mm256_broadcast_ss(&p.mw[2][j]), w3 = _mm256_broadcast_ss(&p.mw[3][j]);
    float* out = dst + j * row_stride;
    for (int v = 0; v < V; ++v) {
      __m256 r = _mm256_mul_ps(w0, _mm256_loadu_ps(c0 + 8 * v));
      r = _mm256_fmadd_ps(w1, _mm256_loadu_ps(c1 + 8 * v), r);
      r = _mm256_fmadd_ps(w2, _mm256_loadu_ps(c2 + 8 * v), r);
      r = _mm256_fmadd_ps(w3, _mm256_loadu_ps(c3 + 8 * v), r);
      _mm256_storeu_ps(out + 8 * v, r);
    }
  }
}

// Backward of gather8 for the column gradient gc + j*row_stride of lanes j < lanes: adds m*w[q]*gc to the
// corners' grad_input rows that locate8 found (invalid corners share the sink row, in corner order) and
// returns per lane sum_c gc*value (-> grad_mask), sum_c gc*dvalue/dy and sum_c gc*dvalue/dx (unmasked).
// Those three are linear in the per-corner sums S_q = sum_c gc*corner_q, so only S_q is accumulated.
// kGather: also write gather8's result to cols + j*row_stride from the same reads of the corners.
template <int V_fixed, bool kGather>
EDVR_AVX2 inline void backward8_impl(const Plan8& p, int lanes, int V_, const float* gc, float* cols,
                                     int64_t row_stride, float* sum_v, float* sum_y, float* sum_x) {
  const int V = V_fixed > 0 ? V_fixed : V_;
  __m256 s[4][8];
  for (int j = lanes; j < 8; ++j) s[0][j] = s[1][j] = s[2][j] = s[3][j] = _mm256_setzero_ps();
  for (int j = 0; j < lanes; ++j) {
    const float* c0 = p.src[0][j];
    const float* c1 = p.src[1][j];
    const float* c2 = p.src[2][j];
    const float* c3 = p.src[3][j];
    float* g0 = p.dst[0][j];
    float* g1 = p.dst[1][j];
    float* g2 = p.dst[2][j];
    float* g3 = p.dst[3][j];
    const __m256 mw0 = _mm256_broadcast_ss(&p.mw[0][j]), mw1 = _mm256_broadcast_ss(&p.mw[1][j]);
    const __m256 mw2 = _mm256_broadcast_ss(&p.mw[2][j]), mw3 = _mm256_broadcast_ss(&p.mw[3][j]);
    const float* gr = gc + j * row_stride;
    float* out = kGather ? cols + j * row_stride : nullptr;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int v = 0; v < V; ++v) {
      const __m256 gv = _mm256_loadu_ps(gr + 8 * v);
      const __m256 x0 = _mm256_loadu_ps(c0 + 8 * v), x1 = _mm256_loadu_ps(c1 + 8 * v);
      const __m256 x2 = _mm256_loadu_ps(c2 + 8 * v), x3 = _mm256_loadu_ps(c3 + 8 * v);
      if (kGather) {  // the same operations as gather8
        __m256 r = _mm256_mul_ps(mw0, x0);
        r = _mm256_fmadd_ps(mw1, x1, r);
        r = _mm256_fmadd_ps(mw2, x2, r);
        r = _mm256_fmadd_ps(mw3, x3, r);
        _mm256_storeu_ps(out + 8 * v, r);
      }
      s0 = _mm256_fmadd_ps(gv, x0, s0);
      s1 = _mm256_fmadd_ps(gv, x1, s1);
      s2 = _mm256_fmadd_ps(gv, x2, s2);
      s3 = _mm256_fmadd_ps(gv, x3, s3);
      _mm256_storeu_ps(g0 + 8 * v, _mm256_fmadd_ps(mw0, gv, _mm256_loadu_ps(g0 + 8 * v)));
      _mm256_storeu_ps(g1 + 8 * v, _mm256_fmadd_ps(mw1, gv, _mm256_loadu_ps(g1 + 8 * v)));
      _mm256_storeu_ps(g2 + 8 * v, _mm256_fmadd_ps(mw2, gv, _mm256_loadu_ps(g2 + 8 * v)));
      _mm256_storeu_ps(g3 + 8 * v, _mm256_fmadd_ps(mw3, gv, _mm256_loadu_ps(g3 + 8 * v)));
    }
    s[0][j] = s0;
    s[1][j] = s1;
    s[2][j] = s2;
    s[3][j] = s3;
  }
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sa = hsum8(s[0]), sb = hsum8(s[1]), sc = hsum8(s[2]), sd = hsum8(s[3]);
  const __m256 ly = _mm256_load_ps(p.ly), lx = _mm256_load_ps(p.lx);
  const __m256 hy = _mm256_sub_ps(one, ly), hx = _mm256_sub_ps(one, lx);
  __m256 val = _mm256_mul_ps(_mm256_load_ps(p.w[0]), sa);
  val = _mm256_fmadd_ps(_mm256_load_ps(p.w[1]), sb, val);
  val = _mm256_fmadd_ps(_mm256_load_ps(p.w[2]), sc, val);
  val = _mm256_fmadd_ps(_mm256_load_ps(p.w[3]), sd, val);
  _mm256_storeu_ps(sum_v, val);
  _mm256_storeu_ps(sum_y, _mm256_fmadd_ps(hx, _mm256_sub_ps(sc, sa), _mm256_mul_ps(lx, _mm256_sub_ps(sd, sb))));
  _mm256_storeu_ps(sum_x, _mm256_fmadd_ps(hy, _mm256_sub_ps(sb, sa), _mm256_mul_ps(ly, _mm256_sub_ps(sd, sc))));
}

template <int V_fixed>
EDVR_AVX2 inline void backward8(const Plan8& p, int lanes, int V_, const float* gc, int64_t row_stride,
                                float* sum_v, float* sum_y, float* sum_x) {
  backward8_impl<V_fixed, false>(p, lanes, V_, gc, nullptr, row_stride, sum_v, sum_y, sum_x);
}

// gather8 into cols and backward8 of gc in one pass (cols and gc rows share row_stride).
template <int V_fixed>
EDVR_AVX2 inline void gather_backward8(const Plan8& p, int lanes, int V_, const float* gc, float* cols,
                                       int64_t row_stride, float* sum_v, float* sum_y, float* sum_x) {
  backward8_impl<V_fixed, true>(p, lanes, V_, gc, cols, row_stride, sum_v, sum_y, sum_x);
}

}  // namespace avx2
}  // namespace dcn
}  // namespace edvr_fast

#endif  // x86-64

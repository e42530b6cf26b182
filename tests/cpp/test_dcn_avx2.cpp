// Host test of csrc/ops/cpu/dcn_lanes_avx2.h, the AVX2 bodies of the CPU NHWC kernel: plan8() against the
// scalar corners() of modulated_deform_conv_math.cuh lane by lane (bit for bit: the same float operations),
// at edge offsets (whole pixels, just inside / outside the border, huge, NaN, inf) and random ones; then
// gather8() and backward8() against plain double loops over the corners that corners() gives;
// gather_backward8() against the two of them (bit for bit); the implicit GEMM's gemm() (dcn_gemm_avx2.h)
// against a double loop at every row and column tail, both loop orders, packed and strided operands,
// strided results, bias and accumulation, with nothing written outside C.
// Exits 77 (skipped, for ctest) on a CPU without AVX2 + FMA.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "expect.h"
#include "ops/cpu/dcn_gemm_avx2.h"
#include "ops/cpu/dcn_lanes_avx2.h"
#include "ops/cuda/modulated_deform_conv_math.cuh"

#if defined(EDVR_FAST_HAVE_AVX2)
using namespace edvr_fast::dcn;

namespace {

struct Lanes {
  int by[8], bx[8];
  float dy[8], dx[8], m[8];
  int lanes;
};

EDVR_AVX2 void run_plan(const Lanes& L, int H, int W, avx2::Plan8* p) {
  const __m256i active = _mm256_cmpgt_epi32(_mm256_set1_epi32(L.lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  avx2::plan8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(L.by)),
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(L.bx)), _mm256_loadu_ps(L.dy),
              _mm256_loadu_ps(L.dx), _mm256_loadu_ps(L.m), active, H, W, p);
}

bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// plan8 lane j against corners() of the same point.
int check_plan(const Lanes& L, int H, int W) {
  avx2::Plan8 p;
  run_plan(L, H, W, &p);
  int bad = 0;
  for (int j = 0; j < 8; ++j) {
    if (j >= L.lanes) {
      for (int q = 0; q < 4; ++q) bad += p.idx[q][j] != -1 || p.w[q][j] != 0.0f;
      continue;
    }
    const Corners<float> c = corners<float>(L.by[j], L.bx[j], L.dy[j], L.dx[j], H, W);
    for (int q = 0; q < 4; ++q) {
      bad += p.idx[q][j] != c.idx[q];
      bad += !same(p.w[q][j], c.w[q]);
      bad += !same(p.mw[q][j], c.w[q] * L.m[j]);
    }
    bad += !same(p.ly[j], c.ly) || !same(p.lx[j], c.lx);
  }
  if (bad) std::fprintf(stderr, "plan8 differs from corners() (H=%d W=%d, first dy=%g dx=%g)\n", H, W, L.dy[0], L.dx[0]);
  return bad;
}

void test_plan_edges() {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float specials[] = {0.0f, 0.5f, -0.5f, 1e-7f, -1e-7f, 1.0f, -1.0f, -0.999f, -1.001f, 2.0f, -2.0f,
                            6.0f, 6.25f, 6.999f, 7.0f, 7.5f, -3.5f, 1e30f, -1e30f, inf, -inf, nan, 3e9f};
  const int n = sizeof(specials) / sizeof(specials[0]);
  const int H = 7, W = 9;
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < n; b += 1) {
      Lanes L;
      L.lanes = 8;
      for (int j = 0; j < 8; ++j) {  // base positions across and around the image
        L.by[j] = j - 1;
        L.bx[j] = 2 * j - 2;
        L.dy[j] = specials[a];
        L.dx[j] = specials[b];
        L.m[j] = 0.25f * j - 0.5f;
      }
      EXPECT(check_plan(L, H, W) == 0);
    }
  }
}

void test_plan_random() {
  std::mt19937 rng(7);
  std::normal_distribution<float> off(0.0f, 3.0f);
  std::uniform_int_distribution<int> pos(-2, 12);
  for (int t = 0; t < 20000; ++t) {
    Lanes L;
    L.lanes = 1 + t % 8;
    for (int j = 0; j < 8; ++j) {
      L.by[j] = pos(rng);
      L.bx[j] = pos(rng);
      L.dy[j] = t % 5 == 0 ? std::round(off(rng)) : off(rng);  // whole-pixel offsets too
      L.dx[j] = off(rng);
      L.m[j] = off(rng);
    }
    const int H = 1 + t % 11, W = 1 + (t / 11) % 13;
    if (check_plan(L, H, W) != 0) {
      EXPECT(false);
      return;
    }
  }
}

// gather8 and backward8 against double loops, for V = 1 (8 channels per group) and V = 2 (16).
EDVR_AVX2 void test_bodies(int V) {
  const int H = 6, W = 7, G = 2, Cg = 8 * V, C = G * Cg, g = 1;
  std::mt19937 rng(11 + V);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> img(size_t(H) * W * C), zeros(Cg, 0.0f);
  for (float& v : img) v = nd(rng);
  for (int t = 0; t < 200; ++t) {
    Lanes L;
    L.lanes = 1 + t % 8;
    for (int j = 0; j < 8; ++j) {
      L.by[j] = j % H - 1;
      L.bx[j] = (j * 3) % W - 1;
      L.dy[j] = 2.5f * nd(rng);
      L.dx[j] = 2.5f * nd(rng);
      L.m[j] = nd(rng);
    }
    avx2::Plan8 p;
    run_plan(L, H, W, &p);
    std::vector<float> gin(img.size(), 0.0f), sink(Cg, 0.0f);
    avx2::locate8(&p, img.data() + g * Cg, C, zeros.data(), gin.data() + g * Cg, sink.data());
    const int64_t stride = Cg + 3;  // rows of a column tile, wider than one group's run
    std::vector<float> cols(8 * stride, -7.0f), gcols(8 * stride);
    for (float& v : gcols) v = nd(rng);
    if (V == 1) {
      avx2::gather8<1>(p, L.lanes, 1, cols.data(), stride);
    } else {
      avx2::gather8<0>(p, L.lanes, V, cols.data(), stride);
    }
    alignas(32) float sv[8], sy[8], sx[8];
    if (V == 1) {
      avx2::backward8<1>(p, L.lanes, 1, gcols.data(), stride, sv, sy, sx);
    } else {
      avx2::backward8<0>(p, L.lanes, V, gcols.data(), stride, sv, sy, sx);
    }
    {  // the fused pass: the same columns, sums and grad_input, bit for bit
      std::vector<float> cols2(8 * stride, -7.0f), gin2(img.size(), 0.0f), sink2(Cg, 0.0f);
      avx2::Plan8 p2 = p;
      avx2::locate8(&p2, img.data() + g * Cg, C, zeros.data(), gin2.data() + g * Cg, sink2.data());
      alignas(32) float sv2[8], sy2[8], sx2[8];
      if (V == 1) {
        avx2::gather_backward8<1>(p2, L.lanes, 1, gcols.data(), cols2.data(), stride, sv2, sy2, sx2);
      } else {
        avx2::gather_backward8<0>(p2, L.lanes, V, gcols.data(), cols2.data(), stride, sv2, sy2, sx2);
      }
      for (size_t i = 0; i < cols.size(); ++i) EXPECT(same(cols2[i], cols[i]));
      for (size_t i = 0; i < gin.size(); ++i) EXPECT(same(gin2[i], gin[i]));
      for (int j = 0; j < L.lanes; ++j) EXPECT(same(sv2[j], sv[j]) && same(sy2[j], sy[j]) && same(sx2[j], sx[j]));
    }
    std::vector<double> gin_ref(img.size(), 0.0);
    for (int j = 0; j < L.lanes; ++j) {
      const Corners<float> c = corners<float>(L.by[j], L.bx[j], L.dy[j], L.dx[j], H, W);
      const double hy = 1.0 - c.ly, hx = 1.0 - c.lx;
      const double wy[4] = {-hx, -c.lx, hx, c.lx}, wx[4] = {-hy, hy, -c.ly, c.ly};
      double rv = 0, ry = 0, rx = 0;
      for (int ch = 0; ch < Cg; ++ch) {
        double v = 0, vy = 0, vx = 0;
        for (int q = 0; q < 4; ++q) {
          if (c.idx[q] < 0) continue;
          const double x = img[size_t(c.idx[q]) * C + g * Cg + ch];
          v += double(c.w[q]) * x;
          vy += wy[q] * x;
          vx += wx[q] * x;
          gin_ref[size_t(c.idx[q]) * C + g * Cg + ch] += double(L.m[j]) * c.w[q] * gcols[j * stride + ch];
        }
        EXPECT(std::fabs(cols[j * stride + ch] - L.m[j] * v) < 1e-5 * (1 + std::fabs(L.m[j] * v)));
        const double gc = gcols[j * stride + ch];
        rv += gc * v;
        ry += gc * vy;
        rx += gc * vx;
      }
      EXPECT(std::fabs(sv[j] - rv) < 1e-4 * (1 + std::fabs(rv)));
      EXPECT(std::fabs(sy[j] - ry) < 1e-4 * (1 + std::fabs(ry)));
      EXPECT(std::fabs(sx[j] - rx) < 1e-4 * (1 + std::fabs(rx)));
      for (int ch = Cg; ch < stride; ++ch) EXPECT(cols[j * stride + ch] == -7.0f);  // nothing past the run
    }
    for (size_t i = 0; i < img.size(); ++i) EXPECT(std::fabs(gin[i] - gin_ref[i]) < 1e-4 * (1 + std::fabs(gin_ref[i])));
  }
}

// gemm() against a double loop. A is M x K, stored row-major or column-major; B K x N, packed (pack_panels
// from a row-major copy) or row-major with a wider row; C M x N inside a guarded buffer, row-major with a
// wider row or column-major; init: zero, bias or accumulate.
EDVR_AVX2 void test_gemm() {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int Ms[] = {1, 2, 3, 4, 5, 6, 7, 11, 13, 24};
  const int Ns[] = {8, 16, 24, 40};
  const int Ks[] = {1, 7, 64};
  const float guard = -1234.5f;
  int cases = 0;
  for (int M : Ms) {
    for (int N : Ns) {
      for (int K : Ks) {
        for (int variant = 0; variant < 8; ++variant) {
          const bool a_colmajor = variant & 1, b_packed = variant & 2, c_colmajor = variant & 4;
          const int init = (M + N + K + variant) % 3;  // 0 zero, 1 bias, 2 accumulate
          const bool columns_outer = (M + variant) % 2 == 0;
          std::vector<float> a(size_t(M) * K), bias(N), b_rm(size_t(K) * (N + 5)), b_pk(size_t(K) * N);
          for (float& v : a) v = nd(rng);
          for (float& v : bias) v = nd(rng);
          for (float& v : b_rm) v = nd(rng);
          const int64_t brk = N + 5;
          avx2::pack_panels(b_rm.data(), brk, 1, K, N, b_pk.data());
          const int64_t ari = a_colmajor ? 1 : K, ark = a_colmajor ? M : 1;
          const int64_t cri = c_colmajor ? 1 : N + 3, crj = c_colmajor ? M + 2 : 1;
          const size_t c_size = c_colmajor ? size_t(M + 2) * N + 4 : size_t(M) * (N + 3) + 4;
          std::vector<float> c(c_size, guard), c0(c_size, guard);
          for (int i = 0; i < M; ++i) {
            for (int j = 0; j < N; ++j) c[i * cri + j * crj] = c0[i * cri + j * crj] = nd(rng);
          }
          const avx2::PanelB B = b_packed ? avx2::PanelB{b_pk.data(), 0, true} : avx2::PanelB{b_rm.data(), brk, false};
          avx2::gemm(M, N, K, a.data(), ari, ark, B, c.data(), cri, crj, init == 2, init == 1 ? bias.data() : nullptr,
                     columns_outer);
          std::vector<bool> inside(c_size, false);
          for (int i = 0; i < M; ++i) {
            for (int j = 0; j < N; ++j) {
              double ref = init == 2 ? c0[i * cri + j * crj] : init == 1 ? bias[j] : 0.0;
              double mag = std::fabs(ref);
              for (int k = 0; k < K; ++k) {
                const double t = double(a[i * ari + k * ark]) * b_rm[k * brk + j];
                ref += t;
                mag += std::fabs(t);
              }
              const size_t at = size_t(i * cri + j * crj);
              inside[at] = true;
              EXPECT(std::fabs(c[at] - ref) <= 1e-6 * (1 + mag));
            }
          }
          for (size_t q = 0; q < c_size; ++q) {
            if (!inside[q]) EXPECT(c[q] == guard);
          }
          ++cases;
        }
      }
    }
  }
  EXPECT(cases == 10 * 4 * 3 * 8);
}

}  // namespace

int main() {
  if (!avx2::supported()) {
    std::printf("SKIP: this CPU has no AVX2 + FMA (the kernel uses its scalar rows there)\n");
    return 77;
  }
  test_plan_edges();
  test_plan_random();
  test_bodies(1);
  test_bodies(2);
  test_gemm();
  if (failures == 0) std::printf("dcn_avx2: all checks passed\n");
  return failures == 0 ? 0 : 1;
}

#else
int main() {
  std::printf("SKIP: not an x86-64 build (no AVX2 bodies to test)\n");
  return 77;
}
#endif

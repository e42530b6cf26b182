// Host test of csrc/ops/cpu/dcn_lanes_avx2.h, the AVX2 bodies of the CPU NHWC kernel: plan8() against the
// scalar corners() of modulated_deform_conv_math.cuh lane by lane (bit for bit: the same float operations),
// at edge offsets (whole pixels, just inside / outside the border, huge, NaN, inf) and random ones; then
// gather8() and backward8() against plain double loops over the corners that corners() gives.
// Exits 77 (skipped, for ctest) on a CPU without AVX2 + FMA.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "expect.h"
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
  if (failures == 0) std::printf("dcn_avx2: all checks passed\n");
  return failures == 0 ? 0 : 1;
}

#else
int main() {
  std::printf("SKIP: not an x86-64 build (no AVX2 bodies to test)\n");
  return 77;
}
#endif

// Host test of csrc/ops/cuda/dcn_nhwc_tiles.cuh: the three NHWC CUDA kernels run on the CPU, block by block,
// every thread of a block step by step between the kernel's __syncthreads() (as modulated_deform_conv_nhwc.cu
// calls the steps), against convolutions written out from modulated_deform_conv_math.cuh's gather_item and
// backward_item: the tiling, partial tiles, channel chunks, output-channel tiles, pixel slices and the lane
// reduction of the offset gradients.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>

#include "expect.h"
#include "ops/cuda/dcn_nhwc_tiles.cuh"

using namespace edvr_fast::dcn;
using namespace edvr_fast::dcn::nhwc_cuda;

namespace {

struct Problem {
  Geometry geo;
  int N, groups, Co;
  std::vector<double> x_nchw, x_nhwc, off, mask, weight, wt, bias, go_nchw, go_nhwc;
};

double val(size_t i, double a, double b) { return std::sin(a * double(i) + b); }

Problem make_problem(int N, int C, int H, int W, int G, int groups, int Co, int kh, int kw) {
  Problem p;
  p.geo = Geometry{C, H, W, H, W, kh, kw, 1, 1, kh / 2, kw / 2, 1, 1, G};
  p.geo.Ho = H + 2 * (kh / 2) - kh + 1;
  p.geo.Wo = W + 2 * (kw / 2) - kw + 1;
  p.N = N;
  p.groups = groups;
  p.Co = Co;
  const int K = p.geo.K(), Cin_g = C / groups, Cog = Co / groups;
  const int64_t L = p.geo.L();
  p.x_nchw.resize(size_t(N) * C * H * W);
  for (size_t i = 0; i < p.x_nchw.size(); ++i) p.x_nchw[i] = val(i, 0.37, 0.2);
  p.x_nhwc.resize(p.x_nchw.size());
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int h = 0; h < H * W; ++h) p.x_nhwc[(size_t(n) * H * W + h) * C + c] = p.x_nchw[(size_t(n) * C + c) * H * W + h];
  p.off.resize(size_t(N) * 2 * G * K * L);
  for (size_t i = 0; i < p.off.size(); ++i) p.off[i] = (i % 17 == 0) ? 30.0 * val(i, 1.1, 0.0) : 2.5 * val(i, 1.7, 0.5);
  p.mask.resize(size_t(N) * G * K * L);
  for (size_t i = 0; i < p.mask.size(); ++i) p.mask[i] = 0.5 + 0.5 * val(i, 0.9, 0.1);
  p.weight.resize(size_t(Co) * Cin_g * K);
  for (size_t i = 0; i < p.weight.size(); ++i) p.weight[i] = 0.2 * val(i, 0.61, 0.3);
  p.bias.resize(Co);
  for (int i = 0; i < Co; ++i) p.bias[i] = 0.1 * i - 0.3;
  // The tap-major weight the host code makes: [groups, K, Cin_g, Cog].
  p.wt.resize(p.weight.size());
  for (int g = 0; g < groups; ++g)
    for (int co = 0; co < Cog; ++co)
      for (int c = 0; c < Cin_g; ++c)
        for (int k = 0; k < K; ++k)
          p.wt[((size_t(g) * K + k) * Cin_g + c) * Cog + co] = p.weight[((size_t(g) * Cog + co) * Cin_g + c) * K + k];
  p.go_nchw.resize(size_t(N) * Co * L);
  for (size_t i = 0; i < p.go_nchw.size(); ++i) p.go_nchw[i] = val(i, 0.23, 0.9);
  p.go_nhwc.resize(p.go_nchw.size());
  for (int n = 0; n < N; ++n)
    for (int co = 0; co < Co; ++co)
      for (int64_t l = 0; l < L; ++l) p.go_nhwc[(size_t(n) * L + l) * Co + co] = p.go_nchw[(size_t(n) * Co + co) * L + l];
  return p;
}

Args args_of(const Problem& p) {
  Args a{};
  a.geo = p.geo;
  a.N = p.N;
  a.groups = p.groups;
  a.Cin_g = p.geo.C / p.groups;
  a.Cog = p.Co / p.groups;
  const int GK = p.geo.offset_groups * p.geo.K();
  const int64_t L = p.geo.L();
  a.os = Strides4{2 * GK * L, L, p.geo.Wo, 1};
  a.ms = Strides4{GK * L, L, p.geo.Wo, 1};
  a.gos = a.os;
  a.gms = a.ms;
  a.single_group_segments = p.geo.channels_per_group() % SEG == 0 && a.Cin_g % SEG == 0;
  a.vec_ok = a.single_group_segments;
  return a;
}

// The column kernel's columns [C*K, N*L] (row c*K + k) from the old math.
std::vector<double> reference_columns(const Problem& p) {
  const int64_t L = p.geo.L();
  std::vector<double> cols(size_t(p.geo.C) * p.geo.K() * p.N * L);
  const ChunkPtrs<double> ptrs{p.x_nchw.data(), p.off.data(), p.mask.data(), p.N};
  for (int64_t f = 0; f < int64_t(p.N) * p.geo.offset_groups * p.geo.K() * L; ++f)
    gather_item<double>(ptrs, cols.data(), p.geo, decompose(f, p.geo));
  return cols;
}

// The gather the tests hand to the tile steps: the same branches as the device's DeviceGather, scalar loads.
template <typename acc_t, typename scalar_t>
struct HostGather {
  const scalar_t* input;
  const scalar_t* offset;
  const scalar_t* mask;
  const Args& a;
  void operator()(const Pixel& px, int k, int c, int nc, acc_t (&vals)[SEG]) const {
    if (a.vec_ok && nc == SEG) {
      gather_segment_fast<acc_t>(input, offset, mask, a, px, k, c, vals, [](const scalar_t* q, acc_t(&v)[SEG]) {
        for (int j = 0; j < SEG; ++j) v[j] = static_cast<acc_t>(q[j]);
      });
    } else {
      gather_channels<SEG, acc_t>(input, offset, mask, a, px, k, c, c + nc, vals);
    }
  }
};

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

bool close(double a, double b, double tol) { return std::fabs(a - b) <= tol * (1.0 + std::fabs(b)); }

template <typename acc_t>
void check_forward(const Problem& p, double tol) {
  const Args a = args_of(p);
  const auto x = cast<acc_t>(p.x_nhwc), off = cast<acc_t>(p.off), msk = cast<acc_t>(p.mask), wt = cast<acc_t>(p.wt),
             bias = cast<acc_t>(p.bias);
  const HostGather<acc_t, acc_t> gather{x.data(), off.data(), msk.data(), a};
  std::vector<acc_t> out(size_t(a.pixels()) * p.Co, acc_t(-99));
  auto sm = std::make_unique<ForwardSmem<acc_t>>();
  std::vector<acc_t> acc(size_t(NT) * 16);
  const int64_t bxs = (a.pixels() + BM - 1) / BM;
  for (int g = 0; g < p.groups; ++g)
    for (int by = 0; by < (a.Cog + BN - 1) / BN; ++by)
      for (int64_t bx = 0; bx < bxs; ++bx) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int k = 0; k < p.geo.K(); ++k)
          for (int c0 = 0; c0 < a.Cin_g; c0 += BK) {
            for (int t = 0; t < NT; ++t) forward_load<acc_t>(a, wt.data(), bx, by, g, t, k, c0, *sm, gather);
            for (int t = 0; t < NT; ++t) forward_mma(*sm, t, *reinterpret_cast<acc_t(*)[4][4]>(&acc[size_t(t) * 16]));
          }
        for (int t = 0; t < NT; ++t)
          forward_store(a, bias.data(), out.data(), bx, by, g, t, *reinterpret_cast<acc_t(*)[4][4]>(&acc[size_t(t) * 16]));
      }
  const std::vector<double> cols = reference_columns(p);
  const int K = p.geo.K();
  const int64_t NL = a.pixels();
  for (int64_t P = 0; P < NL; ++P)
    for (int co = 0; co < p.Co; ++co) {
      const int g = co / a.Cog;
      double want = p.bias[co];
      for (int c = 0; c < a.Cin_g; ++c)
        for (int k = 0; k < K; ++k)
          want += p.weight[(size_t(co) * a.Cin_g + c) * K + k] * cols[(size_t(g * a.Cin_g + c) * K + k) * NL + P];
      EXPECT(close(double(out[size_t(P) * p.Co + co]), want, tol));
    }
}

template <typename acc_t>
void check_grad_weight(const Problem& p, int slices, double tol) {
  const Args a = args_of(p);
  const auto x = cast<acc_t>(p.x_nhwc), off = cast<acc_t>(p.off), msk = cast<acc_t>(p.mask),
             go = cast<acc_t>(p.go_nhwc);
  const HostGather<acc_t, acc_t> gather{x.data(), off.data(), msk.data(), a};
  constexpr int CPT = WeightSmem<acc_t>::CPT, WBN = WeightSmem<acc_t>::WBN;
  const int K = p.geo.K();
  const int64_t tiles = (a.pixels() + BM - 1) / BM;
  const int64_t per_slice = (tiles + slices - 1) / slices;
  const size_t wsize = size_t(p.groups) * K * a.Cin_g * a.Cog;
  std::vector<acc_t> partial(size_t(slices) * wsize, acc_t(-99));
  auto sm = std::make_unique<WeightSmem<acc_t>>();
  std::vector<acc_t> acc(size_t(NT) * CPT);
  for (int bx = 0; bx < K * channel_chunks(a); ++bx)
    for (int by = 0; by < (a.Cog + WBN - 1) / WBN; ++by)
      for (int bz = 0; bz < p.groups * slices; ++bz) {
        const WeightBlock b = weight_block<acc_t>(a, bx, by, bz, slices);
        std::fill(acc.begin(), acc.end(), acc_t(0));
        const int64_t end = (b.s + 1) * per_slice < tiles ? (b.s + 1) * per_slice : tiles;
        for (int64_t tile = b.s * per_slice; tile < end; ++tile) {
          for (int t = 0; t < NT; ++t) weight_load<acc_t>(a, go.data(), b, tile, t, *sm, gather);
          for (int t = 0; t < NT; ++t) weight_accumulate(*sm, t, *reinterpret_cast<acc_t(*)[CPT]>(&acc[size_t(t) * CPT]));
        }
        for (int t = 0; t < NT; ++t)
          weight_store(a, b, t, *reinterpret_cast<acc_t(*)[CPT]>(&acc[size_t(t) * CPT]), partial.data());
      }
  const std::vector<double> cols = reference_columns(p);
  const int64_t NL = a.pixels(), L = p.geo.L();
  for (int g = 0; g < p.groups; ++g)
    for (int k = 0; k < K; ++k)
      for (int c = 0; c < a.Cin_g; ++c)
        for (int co = 0; co < a.Cog; ++co) {
          double got = 0, want = 0;
          for (int s = 0; s < slices; ++s) got += double(partial[s * wsize + wt_index(g, k, c, co, a)]);
          for (int64_t P = 0; P < NL; ++P) {
            want += cols[(size_t(g * a.Cin_g + c) * K + k) * NL + P] *
                    p.go_nchw[(size_t(P / L) * p.Co + g * a.Cog + co) * L + P % L];
          }
          EXPECT(close(got, want, tol));
        }
}

template <typename acc_t>
void check_backward_data(const Problem& p, double tol) {
  const Args a = args_of(p);
  const auto x = cast<acc_t>(p.x_nhwc), off = cast<acc_t>(p.off), msk = cast<acc_t>(p.mask), wt = cast<acc_t>(p.wt),
             go = cast<acc_t>(p.go_nhwc);
  const int K = p.geo.K();
  const int64_t NL = a.pixels(), L = p.geo.L();
  std::vector<acc_t> gin(x.size(), acc_t(0)), goff(off.size(), acc_t(0)), gmask(msk.size(), acc_t(0));
  auto sm = std::make_unique<DataSmem<acc_t>>();
  std::vector<acc_t> gcol(size_t(NT) * SEG);
  const auto load = [](const acc_t* q, acc_t(&v)[SEG]) {
    for (int j = 0; j < SEG; ++j) v[j] = q[j];
  };
  const auto add = [](acc_t* q, const acc_t(&v)[SEG]) {
    for (int j = 0; j < SEG; ++j) q[j] += v[j];
  };
  const int64_t bxs = (NL + BM - 1) / BM;
  for (int by = 0; by < p.groups * K * channel_chunks(a); ++by)
    for (int64_t bx = 0; bx < bxs; ++bx) {
      const DataBlock b = data_block(a, by);
      std::fill(gcol.begin(), gcol.end(), acc_t(0));
      for (int cb = 0; cb < a.Cog; cb += BC) {
        for (int t = 0; t < NT; ++t) data_load<acc_t>(a, go.data(), wt.data(), bx, b, t, cb, *sm);
        for (int t = 0; t < NT; ++t) data_accumulate(*sm, t, *reinterpret_cast<acc_t(*)[SEG]>(&gcol[size_t(t) * SEG]));
      }
      // The sampling step, thread by thread, then the lane reduction per group of 4 lanes (as the shuffles do).
      int keys[NT];
      acc_t ys[NT], xs[NT], ms[NT];
      for (int t = 0; t < NT; ++t) {
        const int64_t P = bx * BM + t / 4;
        const int c = b.g * a.Cin_g + b.c0 + (t % 4) * SEG;
        const int nc = segment_count(a, P, b.c0 + (t % 4) * SEG);
        const Pixel px = pixel_of(P < NL ? P : 0, p.geo);
        const acc_t(&gc)[SEG] = *reinterpret_cast<acc_t(*)[SEG]>(&gcol[size_t(t) * SEG]);
        keys[t] = -1;
        ys[t] = xs[t] = ms[t] = acc_t(0);
        if (!a.single_group_segments) {
          if (nc > 0) backward_channels<SEG>(x.data(), off.data(), msk.data(), a, px, b.k, c, c + nc, gc, gin.data(),
                                             goff.data(), gmask.data());
        } else if (nc > 0) {
          keys[t] = backward_segment_fast(x.data(), off.data(), msk.data(), a, px, b.k, c, gc, gin.data(), &ys[t],
                                          &xs[t], &ms[t], load, add);
        }
      }
      if (!a.single_group_segments) continue;
      for (int t = 0; t < NT; ++t) {
        const int base = t & ~3;
        const int kq[4] = {keys[base], keys[base + 1], keys[base + 2], keys[base + 3]};
        const acc_t yq[4] = {ys[base], ys[base + 1], ys[base + 2], ys[base + 3]};
        const acc_t xq[4] = {xs[base], xs[base + 1], xs[base + 2], xs[base + 3]};
        const acc_t mq[4] = {ms[base], ms[base + 1], ms[base + 2], ms[base + 3]};
        acc_t sy, sx, smk;
        if (reduce_lanes(kq, yq, xq, mq, t % 4, &sy, &sx, &smk)) {
          const int64_t P = bx * BM + t / 4;
          emit_offset_grads(a, pixel_of(P, p.geo), b.k, keys[t], sy, sx, smk, goff.data(), gmask.data());
        }
      }
    }
  // Reference: column gradient W^T x grad_output, then backward_item on the NCHW tensors.
  std::vector<double> gcols(size_t(p.geo.C) * K * NL, 0.0);
  for (int cabs = 0; cabs < p.geo.C; ++cabs) {
    const int g = cabs / a.Cin_g, c = cabs % a.Cin_g;
    for (int k = 0; k < K; ++k)
      for (int64_t P = 0; P < NL; ++P) {
        double s = 0;
        for (int co = 0; co < a.Cog; ++co)
          s += p.weight[(size_t(g * a.Cog + co) * a.Cin_g + c) * K + k] *
               p.go_nchw[(size_t(P / L) * p.Co + g * a.Cog + co) * L + P % L];
        gcols[(size_t(cabs) * K + k) * NL + P] = s;
      }
  }
  std::vector<double> rgin(p.x_nchw.size(), 0.0), rgoff(p.off.size()), rgmask(p.mask.size());
  const ChunkPtrs<double> ptrs{p.x_nchw.data(), p.off.data(), p.mask.data(), p.N};
  for (int64_t f = 0; f < int64_t(p.N) * p.geo.offset_groups * K * L; ++f)
    backward_item<double>(ptrs, gcols.data(), rgin.data(), rgoff.data(), rgmask.data(), p.geo, decompose(f, p.geo));
  const int HW = p.geo.H * p.geo.W;
  for (int n = 0; n < p.N; ++n)
    for (int c = 0; c < p.geo.C; ++c)
      for (int h = 0; h < HW; ++h)
        EXPECT(close(double(gin[(size_t(n) * HW + h) * p.geo.C + c]), rgin[(size_t(n) * p.geo.C + c) * HW + h], tol));
  for (size_t i = 0; i < goff.size(); ++i) EXPECT(close(double(goff[i]), rgoff[i], tol));
  for (size_t i = 0; i < gmask.size(); ++i) EXPECT(close(double(gmask[i]), rgmask[i], tol));
}

void check_reduce_lanes() {
  // Runs of equal keys in every pattern of 4 lanes: each lane's sum covers exactly its run; one writer per run.
  const double ys[4] = {1, 2, 4, 8}, xs[4] = {16, 32, 64, 128}, ms[4] = {256, 512, 1024, 2048};
  const int patterns[][4] = {{0, 0, 0, 0}, {0, 0, 1, 1}, {0, 1, 1, 2}, {0, 1, 1, 1}, {0, 0, 0, 1},
                             {3, -1, -1, -1}, {-1, -1, -1, -1}, {2, 2, -1, -1}};
  for (const auto& keys : patterns) {
    int writers = 0;
    double total = 0;
    for (int seg = 0; seg < 4; ++seg) {
      double sy, sx, sm;
      const bool w = reduce_lanes(keys, ys, xs, ms, seg, &sy, &sx, &sm);
      double want = 0;
      for (int i = 0; i < 4; ++i) want += keys[i] == keys[seg] ? ys[i] : 0.0;
      EXPECT(sy == want && sx == 16 * want && sm == 256 * want);
      if (w) {
        ++writers;
        total += sy;
      }
      EXPECT(!w || keys[seg] >= 0);
    }
    double want_total = 0;
    int runs = 0;
    for (int i = 0; i < 4; ++i) {
      if (keys[i] >= 0) want_total += ys[i];
      if (keys[i] >= 0 && (i == 0 || keys[i - 1] != keys[i])) ++runs;
    }
    EXPECT(writers == runs && total == want_total);
  }
}

}  // namespace

int main() {
  // 8 channels per offset group (one sample per segment); 2 channel chunks, the second partial (48 = 32 + 16);
  // 70 output channels (two tiles, the second partial); 198 pixels (4 pixel tiles, the last partial).
  const Problem fast = make_problem(2, 48, 9, 11, 6, 1, 70, 3, 3);
  // Convolution groups with 12 input channels each (segments cross offset groups of 4: the general path).
  const Problem general = make_problem(3, 24, 7, 6, 6, 2, 10, 3, 3);
  // A 2x3 kernel, 16 channels per offset group over two segments, 2 groups of 16.
  const Problem wide = make_problem(1, 32, 10, 13, 2, 2, 34, 2, 3);
  for (const Problem* p : {&fast, &general, &wide}) {
    check_forward<double>(*p, 1e-12);
    check_forward<float>(*p, 2e-5);
    check_grad_weight<double>(*p, 3, 1e-11);  // fp64 tiles: 32 output channels (4 per thread)
    check_grad_weight<float>(*p, 1, 1e-4);    // fp32 tiles: 64 output channels (8 per thread)
    check_backward_data<double>(*p, 1e-10);
  }
  check_reduce_lanes();
  if (failures) {
    std::printf("dcn nhwc tiles: %d checks failed\n", failures);
    return 1;
  }
  std::printf("dcn nhwc tiles: all checks passed\n");
  return 0;
}

// The tile steps of the NHWC CUDA kernels (modulated_deform_conv_nhwc.cu) between their __syncthreads():
// which thread loads, gathers, multiplies and writes what. __host__ __device__ and Torch-free, so that
// tests/cpp/test_dcn_nhwc_tiles.cpp runs whole kernels on the CPU (every thread of a block, step by step).
#pragma once

#include <cstdint>

#include "ops/cuda/dcn_nhwc_math.cuh"

namespace edvr_fast {
namespace dcn {
namespace nhwc_cuda {

// Tiles: BM output pixels x BN output channels, reduced over BK (tap, channel) pairs of one tap; NT threads.
// In every gather thread t owns pixel t / 4 of the tile and the SEG channels (t % 4) * SEG .. of the BK.
constexpr int BM = 64, BN = 64, BK = 32, SEG = 8, NT = 256, BC = 32;
static_assert(BM * (BK / SEG) == NT, "one gather segment per thread");

EDVR_HD int min_int(int a, int b) { return a < b ? a : b; }
EDVR_HD int max_int(int a, int b) { return a > b ? a : b; }
EDVR_HD int channel_chunks(const Args& a) { return (a.Cin_g + BK - 1) / BK; }

// Channels of thread t's segment in the chunk starting at c0 (convolution-group relative): first and count
// (0 past the group's channels or for a pixel past the end).
EDVR_HD int segment_count(const Args& a, int64_t P, int c) {
  return P < a.pixels() ? max_int(0, min_int(SEG, a.Cin_g - c)) : 0;
}

// ------------------------------------------------------------------------- one segment, one sample
// The fast path of a segment of SEG channels in one offset group starting at absolute channel c (a multiple of
// SEG): one sample, the four corners read by load(ptr, v) as SEG contiguous values (vector loads on the device).
template <typename acc_t, typename scalar_t, typename Load>
EDVR_HD void gather_segment_fast(const scalar_t* input, const scalar_t* offset, const scalar_t* mask, const Args& a,
                                 const Pixel& px, int k, int c, acc_t (&vals)[SEG], Load&& load) {
  const TapSample<acc_t> s = tap_sample<acc_t>(a, offset, mask, px, offset_group_of(c, a.geo), k);
  acc_t v[4][SEG];
  for (int q = 0; q < 4; ++q) {
    if (s.c.idx[q] >= 0) {
      load(input + nhwc_index(px.n, s.c.idx[q], c, a.geo), v[q]);
    } else {
      for (int j = 0; j < SEG; ++j) v[q][j] = acc_t(0);
    }
  }
  combine<SEG>(v, s, vals);
}

// Backward of gather_segment_fast with column gradients gcol: add(ptr, values) adds SEG contiguous values to
// grad_input (vector atomics on the device); this segment's offset / mask partials into *gy, *gx, *gm.
// Returns the offset group (the key of reduce_lanes).
template <typename acc_t, typename scalar_t, typename grad_t, typename Load, typename Add>
EDVR_HD int backward_segment_fast(const scalar_t* input, const scalar_t* offset, const scalar_t* mask, const Args& a,
                                  const Pixel& px, int k, int c, const acc_t (&gcol)[SEG], grad_t* grad_input,
                                  acc_t* gy, acc_t* gx, acc_t* gm, Load&& load, Add&& add) {
  const int og = offset_group_of(c, a.geo);
  const TapSample<acc_t> s = tap_sample<acc_t>(a, offset, mask, px, og, k);
  acc_t v[4][SEG];
  for (int q = 0; q < 4; ++q) {
    if (s.c.idx[q] >= 0) {
      load(input + nhwc_index(px.n, s.c.idx[q], c, a.geo), v[q]);
    } else {
      for (int j = 0; j < SEG; ++j) v[q][j] = acc_t(0);
    }
  }
  acc_t gin[4][SEG];
  combine_backward<SEG>(v, s, gcol, gin, gy, gx, gm);
  for (int q = 0; q < 4; ++q) {
    if (s.c.idx[q] >= 0) add(grad_input + nhwc_index(px.n, s.c.idx[q], c, a.geo), gin[q]);
  }
  return og;
}

// The write of reduce_lanes' writer: the group's offset / mask gradient (atomic: a group can span tiles).
template <typename acc_t, typename grad_t>
EDVR_HD void emit_offset_grads(const Args& a, const Pixel& px, int k, int og, acc_t sy, acc_t sx, acc_t sm,
                               grad_t* grad_offset, grad_t* grad_mask) {
  const int K = a.geo.K();
  const int oc = offset_channel(og, k, K);
  scatter_add(grad_offset + a.gos.at(px.n, oc, px.ho, px.wo), sy);
  scatter_add(grad_offset + a.gos.at(px.n, oc + 1, px.ho, px.wo), sx);
  scatter_add(grad_mask + a.gms.at(px.n, mask_channel(og, k, K), px.ho, px.wo), sm);
}

// ----------------------------------------------------------------------------------------------- forward
// Block (blockIdx.x = pixel tile, blockIdx.y = output-channel tile, blockIdx.z = convolution group).
template <typename acc_t>
struct ForwardSmem {
  acc_t As[BK][BM + 1];  // columns, reduction-major (odd pitch: the gather stores hit 32 banks)
  acc_t Bs[BK][BN + 4];  // weight tile
};

// Step 1 of chunk (k, c0): thread t gathers its segment into As and loads its share of the weight tile.
// gather(px, k, c_abs, nc, vals) fills vals[0..SEG) (the device's vector path or the reference path).
template <typename acc_t, typename scalar_t, typename Gather>
EDVR_HD void forward_load(const Args& a, const scalar_t* wt, int64_t bx, int by, int g, int t, int k, int c0,
                          ForwardSmem<acc_t>& sm, Gather&& gather) {
  const int gp = t / 4, gseg = t % 4;
  const int64_t P = bx * BM + gp;
  const int c = c0 + gseg * SEG;
  const int nc = segment_count(a, P, c);
  acc_t vals[SEG];
  if (nc > 0) {
    gather(pixel_of(P, a.geo), k, g * a.Cin_g + c, nc, vals);
  } else {
    for (int j = 0; j < SEG; ++j) vals[j] = acc_t(0);
  }
  for (int j = 0; j < SEG; ++j) sm.As[gseg * SEG + j][gp] = vals[j];
  const int co0 = by * BN;
  for (int e = t; e < BK * BN; e += NT) {
    const int kk = e / BN, cc = e % BN;
    const int cw = c0 + kk, co = co0 + cc;
    sm.Bs[kk][cc] = (cw < a.Cin_g && co < a.Cog) ? static_cast<acc_t>(wt[wt_index(g, k, cw, co, a)]) : acc_t(0);
  }
}

// Step 2: thread t (4 pixels x 4 output channels) accumulates the chunk.
template <typename acc_t>
EDVR_HD void forward_mma(const ForwardSmem<acc_t>& sm, int t, acc_t (&acc)[4][4]) {
  const int tx = t % 16, ty = t / 16;
#if defined(__CUDA_ARCH__)
#pragma unroll 8
#endif
  for (int kk = 0; kk < BK; ++kk) {
    acc_t av[4], bv[4];
    for (int i = 0; i < 4; ++i) av[i] = sm.As[kk][ty * 4 + i];
    for (int j = 0; j < 4; ++j) bv[j] = sm.Bs[kk][tx * 4 + j];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
  }
}

// Step 3, after all chunks: out[P * Co + g * Cog + co] (NHWC) = acc + bias.
template <typename acc_t, typename scalar_t>
EDVR_HD void forward_store(const Args& a, const scalar_t* bias, scalar_t* out, int64_t bx, int by, int g, int t,
                           const acc_t (&acc)[4][4]) {
  const int tx = t % 16, ty = t / 16;
  const int Co = a.Co();
  for (int i = 0; i < 4; ++i) {
    const int64_t P = bx * BM + ty * 4 + i;
    if (P >= a.pixels()) continue;
    for (int j = 0; j < 4; ++j) {
      const int co = by * BN + tx * 4 + j;
      if (co >= a.Cog) continue;
      const int oc = g * a.Cog + co;
      const acc_t b = bias != nullptr ? static_cast<acc_t>(bias[oc]) : acc_t(0);
      out[P * Co + oc] = static_cast<scalar_t>(acc[i][j] + b);
    }
  }
}

// ------------------------------------------------------------------------------------ backward (data)
// Block (blockIdx.x = pixel tile, blockIdx.y = (g * K + k) * chunks + chunk): the column gradient of BM pixels
// x BK channels of tap k, in registers (thread t: its gather segment), then the sampling backward.
struct DataBlock {
  int g, k, c0;
};

EDVR_HD DataBlock data_block(const Args& a, int by) {
  const int chunks = channel_chunks(a), K = a.geo.K();
  return DataBlock{by / (K * chunks), (by / chunks) % K, (by % chunks) * BK};
}

template <typename acc_t>
struct DataSmem {
  acc_t Gs[BM][BC + 1];  // grad_output tile
  acc_t Ws[BK][BC + 1];  // weight tile (reduction rows x output channels)
};

// Step 1 of output-channel chunk cb: grad_output and weight tiles.
template <typename acc_t, typename scalar_t>
EDVR_HD void data_load(const Args& a, const scalar_t* grad_out, const scalar_t* wt, int64_t bx, const DataBlock& b,
                       int t, int cb, DataSmem<acc_t>& sm) {
  const int Co = a.Co();
  const int64_t P0 = bx * BM;
  for (int e = t; e < BM * BC; e += NT) {
    const int pp = e / BC, cc = e % BC;
    const int64_t P = P0 + pp;
    sm.Gs[pp][cc] = (P < a.pixels() && cb + cc < a.Cog)
                        ? static_cast<acc_t>(grad_out[P * Co + b.g * a.Cog + cb + cc])
                        : acc_t(0);
  }
  for (int e = t; e < BK * BC; e += NT) {
    const int rr = e / BC, cc = e % BC;
    sm.Ws[rr][cc] = (b.c0 + rr < a.Cin_g && cb + cc < a.Cog)
                        ? static_cast<acc_t>(wt[wt_index(b.g, b.k, b.c0 + rr, cb + cc, a)])
                        : acc_t(0);
  }
}

// Step 2: gcol[j] (channel c0 + seg * SEG + j) += sum over the chunk's output channels of go * w.
template <typename acc_t>
EDVR_HD void data_accumulate(const DataSmem<acc_t>& sm, int t, acc_t (&gcol)[SEG]) {
  const int p = t / 4, seg = t % 4;
#if defined(__CUDA_ARCH__)
#pragma unroll 4
#endif
  for (int cc = 0; cc < BC; ++cc) {
    const acc_t go = sm.Gs[p][cc];
    for (int j = 0; j < SEG; ++j) gcol[j] += go * sm.Ws[seg * SEG + j][cc];
  }
}

// Step 3 helper: the 4 lanes of one pixel hold (key = offset group or -1, partial sums); lane `seg` learns
// the sums over the lanes with its key and whether it is the first lane of its group (the one that writes).
template <typename acc_t>
EDVR_HD bool reduce_lanes(const int (&keys)[4], const acc_t (&ys)[4], const acc_t (&xs)[4], const acc_t (&ms)[4],
                          int seg, acc_t* sy, acc_t* sx, acc_t* sm) {
  const int key = keys[seg];
  acc_t y = acc_t(0), x = acc_t(0), m = acc_t(0);
  for (int i = 0; i < 4; ++i) {
    if (keys[i] == key) {
      y += ys[i];
      x += xs[i];
      m += ms[i];
    }
  }
  *sy = y;
  *sx = x;
  *sm = m;
  return key >= 0 && (seg == 0 || keys[seg - 1] != key);
}

// ----------------------------------------------------------------------------------- backward (weight)
// Block (blockIdx.x = k * chunks + chunk, blockIdx.y = output-channel tile of WBN, blockIdx.z = g * slices + s):
// partial[s][g][k][c][co] = sum over the pixel tiles of slice s of column(P; k, c) * grad_out[P, g*Cog + co].
template <typename acc_t>
constexpr int wgrad_channels_per_thread() {  // 8 in fp32 (a 64-channel tile), 4 in fp64: 48 KiB of smem at most
  return sizeof(acc_t) == 8 ? 4 : 8;
}

template <typename acc_t>
struct WeightSmem {
  static constexpr int CPT = wgrad_channels_per_thread<acc_t>(), WBN = 8 * CPT;
  acc_t As[BM][BK + 1];   // columns, pixel-major
  acc_t Gs[BM][WBN + 1];  // grad_output tile
};

struct WeightBlock {
  int k, c0, co0, g, s;
};

template <typename acc_t>
EDVR_HD WeightBlock weight_block(const Args& a, int bx, int by, int bz, int slices) {
  const int chunks = channel_chunks(a);
  return WeightBlock{bx / chunks, (bx % chunks) * BK, by * WeightSmem<acc_t>::WBN, bz / slices, bz % slices};
}

// Step 1 of pixel tile `tile`: the gathered columns and the grad_output tile.
template <typename acc_t, typename scalar_t, typename Gather>
EDVR_HD void weight_load(const Args& a, const scalar_t* grad_out, const WeightBlock& b, int64_t tile, int t,
                         WeightSmem<acc_t>& sm, Gather&& gather) {
  constexpr int WBN = WeightSmem<acc_t>::WBN;
  const int gp = t / 4, gseg = t % 4;
  const int64_t P0 = tile * BM, P = P0 + gp;
  const int c = b.c0 + gseg * SEG;
  const int nc = segment_count(a, P, c);
  acc_t vals[SEG];
  if (nc > 0) {
    gather(pixel_of(P, a.geo), b.k, b.g * a.Cin_g + c, nc, vals);
  } else {
    for (int j = 0; j < SEG; ++j) vals[j] = acc_t(0);
  }
  for (int j = 0; j < SEG; ++j) sm.As[gp][gseg * SEG + j] = vals[j];
  const int Co = a.Co();
  for (int e = t; e < BM * WBN; e += NT) {
    const int pp = e / WBN, cc = e % WBN;
    const int64_t Pe = P0 + pp;
    sm.Gs[pp][cc] = (Pe < a.pixels() && b.co0 + cc < a.Cog)
                        ? static_cast<acc_t>(grad_out[Pe * Co + b.g * a.Cog + b.co0 + cc])
                        : acc_t(0);
  }
}

// Step 2: thread t (reduction row t / 8, CPT output channels) accumulates the tile.
template <typename acc_t>
EDVR_HD void weight_accumulate(const WeightSmem<acc_t>& sm, int t, acc_t (&acc)[WeightSmem<acc_t>::CPT]) {
  constexpr int CPT = WeightSmem<acc_t>::CPT;
  const int r = t / 8, cq = (t % 8) * CPT;
#if defined(__CUDA_ARCH__)
#pragma unroll 4
#endif
  for (int pp = 0; pp < BM; ++pp) {
    const acc_t x = sm.As[pp][r];
    for (int j = 0; j < CPT; ++j) acc[j] += x * sm.Gs[pp][cq + j];
  }
}

// Step 3: every (s, g, k, c, co) of the block written once (the slices' sum is the host's).
template <typename acc_t>
EDVR_HD void weight_store(const Args& a, const WeightBlock& b, int t, const acc_t (&acc)[WeightSmem<acc_t>::CPT],
                          acc_t* partial) {
  constexpr int CPT = WeightSmem<acc_t>::CPT;
  const int r = t / 8, cq = (t % 8) * CPT;
  const int cw = b.c0 + r;
  if (cw >= a.Cin_g) return;
  acc_t* dst = partial + (int64_t(b.s) * a.groups * a.geo.K() * a.Cin_g * a.Cog + wt_index(b.g, b.k, cw, 0, a));
  for (int j = 0; j < CPT; ++j) {
    const int co = b.co0 + cq + j;
    if (co < a.Cog) dst[co] = acc[j];
  }
}

}  // namespace nhwc_cuda
}  // namespace dcn
}  // namespace edvr_fast

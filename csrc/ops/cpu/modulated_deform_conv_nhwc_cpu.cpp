// The NHWC (channels-last) CPU kernel of edvr_fast::modulated_deform_conv2d, the CPU default: tiles of
// output pixels are gathered into a small column tile (pixel-major, channels contiguous) that feeds GEMMs.
// Per (pixel, tap, offset group) the offset, mask and bilinear weights are computed once and the four
// corners are read as contiguous channel runs (dcn_nhwc_rows.h). No C*K x N*L column buffer exists: a
// tile stays in cache. The backward gives each work unit (a fixed partition that depends on the shape
// only) its own grad_weight and grad_input accumulators, summed in unit order: deterministic.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "ops/cpu/dcn_nhwc_rows.h"
#include "ops/cpu/modulated_deform_conv_nhwc_cpu.h"
#include "ops/modulated_deform_conv_driver.h"

namespace edvr_fast {
namespace dcn {
namespace nhwc {
namespace {

// Work units of the backward: at least this many (shape-dependent only, so results do not depend on
// the number of threads), whole images when the batch has as many.
constexpr int64_t kUnits = 8;
// Bytes of one column tile (pixels x C*K); two live per thread in the backward.
constexpr int64_t kTileBytes = int64_t(384) << 10;

struct Strides {
  int64_t n, c, h, w;
};

Strides strides_of(const at::Tensor& t) { return Strides{t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

template <typename scalar_t>
struct Plan {
  Geometry geo;
  int Cig;           // input channels per conv group
  int64_t CK;        // columns of a tile row: C*K, ordered (conv group, tap, channel in group)
  int64_t tile;      // pixels per tile
  const scalar_t* in;  // NHWC
  const scalar_t* off;
  Strides so;
  const scalar_t* msk;
  Strides sm;
};

template <typename scalar_t>
Plan<scalar_t> make_plan(const Geometry& geo, int64_t groups, const at::Tensor& in, const at::Tensor& offset,
                         const at::Tensor& mask) {
  Plan<scalar_t> P;
  P.geo = geo;
  P.Cig = static_cast<int>(geo.C / groups);
  P.CK = int64_t(geo.C) * geo.K();
  const int64_t per_pixel = P.CK * static_cast<int64_t>(sizeof(scalar_t));
  P.tile = std::max<int64_t>(8, std::min<int64_t>(int64_t(geo.L()), kTileBytes / std::max<int64_t>(per_pixel, 1)));
  P.in = in.data_ptr<scalar_t>();
  P.off = offset.data_ptr<scalar_t>();
  P.so = strides_of(offset);
  P.msk = mask.data_ptr<scalar_t>();
  P.sm = strides_of(mask);
  return P;
}

// Calls f(column, channel, count) for the runs of channels [c0, c1) that are contiguous in a tile row of
// tap k: a run ends where a conv group ends.
template <typename F>
inline void for_runs(int c0, int c1, int k, int K, int Cig, F&& f) {
  for (int c = c0; c < c1;) {
    const int gg = c / Cig;
    const int end = std::min(c1, (gg + 1) * Cig);
    f(int64_t(gg) * K * Cig + int64_t(k) * Cig + (c - gg * Cig), c, end - c);
    c = end;
  }
}

// dst[row][ch] = src[n][ch][pixel p0 + row] for ch < channels: a tile's offsets (or masks), pixel-major,
// read along the source's fastest dimension (planes of an NCHW tensor, pixels of an NHWC one).
template <typename scalar_t, typename acc_t>
void stage(const scalar_t* src_n, const Strides& s, int channels, const Geometry& geo, int64_t p0, int64_t p1,
           acc_t* dst) {
  const int64_t np = p1 - p0;
  if (s.h == int64_t(geo.Wo) * s.w) {  // pixels at a fixed stride
    const scalar_t* base = src_n + p0 * s.w;
    if (s.c < s.w) {
      for (int64_t r = 0; r < np; ++r) {
        for (int ch = 0; ch < channels; ++ch) dst[r * channels + ch] = acc_t(base[r * s.w + ch * s.c]);
      }
    } else {
      for (int ch = 0; ch < channels; ++ch) {
        for (int64_t r = 0; r < np; ++r) dst[r * channels + ch] = acc_t(base[r * s.w + ch * s.c]);
      }
    }
    return;
  }
  for (int64_t r = 0; r < np; ++r) {
    const int64_t p = p0 + r;
    const scalar_t* px = src_n + (p / geo.Wo) * s.h + (p % geo.Wo) * s.w;
    for (int ch = 0; ch < channels; ++ch) dst[r * channels + ch] = acc_t(px[ch * s.c]);
  }
}

// Calls f(row, k, g, by, bx, dy, dx, m, ho, wo) for each (pixel, tap, offset group) of pixels [p0, p1)
// of image n; row is the pixel's index in the tile. scratch holds tile * 3*G*K values.
template <typename scalar_t, typename acc_t, typename F>
inline void for_samples(const Plan<scalar_t>& P, int64_t n, int64_t p0, int64_t p1, acc_t* scratch, F&& f) {
  const Geometry& geo = P.geo;
  const int K = geo.K(), G = geo.offset_groups;
  acc_t* offs = scratch;
  acc_t* msks = scratch + P.tile * 2 * G * K;
  stage<scalar_t, acc_t>(P.off + n * P.so.n, P.so, 2 * G * K, geo, p0, p1, offs);
  stage<scalar_t, acc_t>(P.msk + n * P.sm.n, P.sm, G * K, geo, p0, p1, msks);
  int ho = static_cast<int>(p0 / geo.Wo), wo = static_cast<int>(p0 % geo.Wo);
  for (int64_t p = p0; p < p1; ++p) {
    const acc_t* op = offs + (p - p0) * 2 * G * K;
    const acc_t* mp = msks + (p - p0) * G * K;
    for (int k = 0; k < K; ++k) {
      int by, bx;
      base_position(geo, ho, wo, k, &by, &bx);
      for (int g = 0; g < G; ++g) {
        const int oc = offset_channel(g, k, K);
        f(p - p0, k, g, by, bx, op[oc], op[oc + 1], mp[mask_channel(g, k, K)], ho, wo);
      }
    }
    if (++wo == geo.Wo) {
      wo = 0;
      ++ho;
    }
  }
}

// cols[row][col(c, k)] = m * bilinear(input[n], channel c, tap k) for the pixels [p0, p1) of image n.
template <typename scalar_t, typename acc_t>
void gather_tile(const Plan<scalar_t>& P, int64_t n, int64_t p0, int64_t p1, scalar_t* cols, acc_t* scratch) {
  const Geometry& geo = P.geo;
  const int K = geo.K(), C = geo.C, Cg = geo.channels_per_group();
  const scalar_t* in_n = P.in + n * int64_t(geo.H) * geo.W * C;
  for_samples<scalar_t, acc_t>(P, n, p0, p1, scratch, [&](int64_t row, int k, int g, int by, int bx, acc_t dy, acc_t dx,
                                                   acc_t m, int, int) {
    const Sample<acc_t> s = make_sample<acc_t>(by, bx, dy, dx, geo.H, geo.W);
    scalar_t* dst = cols + row * P.CK;
    for_runs(g * Cg, (g + 1) * Cg, k, K, P.Cig, [&](int64_t col, int c, int cnt) {
      const scalar_t* src[4];
      for (int q = 0; q < s.nv; ++q) src[q] = in_n + s.pix[q] * C + c;
      gather_row<scalar_t, acc_t>(dst + col, src, s, m, cnt);
    });
  });
}

// From the column gradient of pixels [p0, p1) of image n: grad_offset and grad_mask of those pixels
// (written once) and their share of grad_input, added into gin (NHWC, one image).
template <typename scalar_t, typename acc_t, typename gin_t>
void backward_tile(const Plan<scalar_t>& P, int64_t n, int64_t p0, int64_t p1, const scalar_t* gcols, gin_t* gin,
                   scalar_t* goff, const Strides& sgo, scalar_t* gmsk, const Strides& sgm, acc_t* scratch) {
  const Geometry& geo = P.geo;
  const int K = geo.K(), C = geo.C, Cg = geo.channels_per_group();
  const scalar_t* in_n = P.in + n * int64_t(geo.H) * geo.W * C;
  scalar_t* goff_n = goff + n * sgo.n;
  scalar_t* gmsk_n = gmsk + n * sgm.n;
  for_samples<scalar_t, acc_t>(P, n, p0, p1, scratch, [&](int64_t row, int k, int g, int by, int bx, acc_t dy, acc_t dx,
                                                   acc_t m, int ho, int wo) {
    const Sample<acc_t> s = make_sample<acc_t>(by, bx, dy, dx, geo.H, geo.W);
    const scalar_t* gc = gcols + row * P.CK;
    acc_t sums[3] = {acc_t(0), acc_t(0), acc_t(0)};
    if (s.nv > 0) {
      for_runs(g * Cg, (g + 1) * Cg, k, K, P.Cig, [&](int64_t col, int c, int cnt) {
        const scalar_t* src[4];
        gin_t* dst[4];
        for (int q = 0; q < s.nv; ++q) {
          src[q] = in_n + s.pix[q] * C + c;
          dst[q] = gin + s.pix[q] * C + c;
        }
        backward_row<scalar_t, acc_t, gin_t>(gc + col, src, dst, s, m, cnt, sums);
      });
    }
    const int oc = offset_channel(g, k, K);
    scalar_t* go = goff_n + int64_t(ho) * sgo.h + int64_t(wo) * sgo.w;
    go[oc * sgo.c] = static_cast<scalar_t>(m * sums[1]);
    go[(oc + 1) * sgo.c] = static_cast<scalar_t>(m * sums[2]);
    gmsk_n[int64_t(mask_channel(g, k, K)) * sgm.c + int64_t(ho) * sgm.h + int64_t(wo) * sgm.w] =
        static_cast<scalar_t>(sums[0]);
  });
}

// [N, C, H, W] as [N, H*W, C] (a view for contiguous and channels-last tensors).
at::Tensor pixels_by_channels(const at::Tensor& t) {
  return t.permute({0, 2, 3, 1}).view({t.size(0), t.size(2) * t.size(3), t.size(1)});
}

// Weight [Co, Cig, kh, kw] as [groups, Cog, K*Cig], columns ordered (tap, channel) like a tile row.
at::Tensor weight_by_tap(const at::Tensor& weight, int64_t groups) {
  const int64_t Co = weight.size(0);
  return weight.permute({0, 2, 3, 1}).contiguous().view({groups, Co / groups, -1});
}

}  // namespace

at::Tensor forward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                   const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t offset_groups) {
  const Geometry geo =
      check_args("CPU", at::kCPU, input, offset, mask, weight, stride, padding, dilation, groups, offset_groups);
  const at::MemoryFormat fmt = layout_of(input);
  const at::Tensor in = input.contiguous(at::MemoryFormat::ChannelsLast);  // no copy when channels-last
  const int64_t N = input.size(0), Co = weight.size(0), L = geo.L(), Cog = Co / groups;
  at::Tensor out = at::empty({N, Co, geo.Ho, geo.Wo}, input.options().memory_format(fmt));
  if (N == 0) return out;
  const at::Tensor w = weight_by_tap(weight, groups);
  const bool has_bias = bias.has_value() && bias->defined();
  const at::Tensor b = has_bias ? bias->to(input.scalar_type()) : at::Tensor();
  const at::Tensor out_lc = pixels_by_channels(out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "edvr_dcn_nhwc_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Plan<scalar_t> P = make_plan<scalar_t>(geo, groups, in, offset, mask);
    const int64_t tiles_per_image = (L + P.tile - 1) / P.tile;
    const int64_t KCg = P.CK / groups;
    at::parallel_for(0, N * tiles_per_image, 1, [&](int64_t begin, int64_t end) {
      at::Tensor cols = at::empty({P.tile, P.CK}, in.options());
      std::vector<acc_t> scratch(P.tile * 3 * geo.offset_groups * geo.K());
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / tiles_per_image, p0 = (t % tiles_per_image) * P.tile;
        const int64_t np = std::min(P.tile, L - p0);
        gather_tile<scalar_t, acc_t>(P, n, p0, p0 + np, cols.data_ptr<scalar_t>(), scratch.data());
        const at::Tensor c = cols.narrow(0, 0, np);
        const at::Tensor o = out_lc[n].narrow(0, p0, np);
        for (int64_t gg = 0; gg < groups; ++gg) {
          at::Tensor dst = o.narrow(1, gg * Cog, Cog);
          const at::Tensor a = c.narrow(1, gg * KCg, KCg);
          if (has_bias) {
            at::addmm_out(dst, b.narrow(0, gg * Cog, Cog), a, w[gg].t());
          } else {
            at::mm_out(dst, a, w[gg].t());
          }
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out_, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t offset_groups) {
  const Geometry geo =
      check_args("CPU", at::kCPU, input, offset, mask, weight, stride, padding, dilation, groups, offset_groups);
  const int64_t N = input.size(0), C = geo.C, Co = weight.size(0), L = geo.L(), Cog = Co / groups;
  check_grad_output(grad_out_, N, Co, geo);
  const at::ScalarType st = input.scalar_type();
  const bool is_double = st == at::kDouble;
  const at::ScalarType acc_st = is_double ? at::kDouble : at::kFloat;
  at::Tensor go = grad_out_.to(st);
  if (!go.is_contiguous() && !go.is_contiguous(at::MemoryFormat::ChannelsLast)) go = go.contiguous(layout_of(input));
  const at::Tensor in = input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor w = weight_by_tap(weight, groups);
  at::Tensor gin = at::zeros({N, geo.H, geo.W, C}, input.options().dtype(acc_st));
  at::Tensor grad_offset = at::empty(offset.sizes(), offset.options().memory_format(layout_of(offset)));
  at::Tensor grad_mask = at::empty(mask.sizes(), mask.options().memory_format(layout_of(mask)));
  const int64_t KCg = int64_t(C / groups) * geo.K();
  at::Tensor gw = at::zeros({groups, Cog, KCg}, weight.options().dtype(acc_st));
  const at::Tensor grad_bias = sum_over(go, {0, 2, 3}, acc_st);
  if (N > 0) {
    const at::Tensor go_lc = pixels_by_channels(go);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, st, "edvr_dcn_nhwc_bwd_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      using gin_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
      const Plan<scalar_t> P = make_plan<scalar_t>(geo, groups, in, offset, mask);
      const int64_t tiles_per_image = (L + P.tile - 1) / P.tile;
      // Units: slices of whole images, or bands of each image's tiles when the batch is small.
      const int64_t bands = N >= kUnits ? 1 : std::min(tiles_per_image, (kUnits + N - 1) / N);
      const int64_t units = N >= kUnits ? kUnits : N * bands;
      at::Tensor gw_units = at::zeros({units, groups, Cog, KCg}, gw.options());
      const int64_t image = int64_t(geo.H) * geo.W * C;
      at::Tensor private_gin = bands > 1 ? at::zeros({N, bands - 1, image}, gin.options()) : at::Tensor();
      const Strides sgo = strides_of(grad_offset), sgm = strides_of(grad_mask);
      scalar_t* goff = grad_offset.data_ptr<scalar_t>();
      scalar_t* gmsk = grad_mask.data_ptr<scalar_t>();
      gin_t* gin_p = gin.data_ptr<gin_t>();
      gin_t* priv_p = bands > 1 ? private_gin.data_ptr<gin_t>() : nullptr;
      at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
          at::Tensor cols = at::empty({P.tile, P.CK}, in.options());
        at::Tensor gcols = at::empty({P.tile, P.CK}, in.options());
        std::vector<acc_t> scratch(P.tile * 3 * geo.offset_groups * geo.K());
        for (int64_t u = begin; u < end; ++u) {
          int64_t n0, n1, t0, t1, band;
          if (bands == 1) {
            n0 = N * u / units, n1 = N * (u + 1) / units, t0 = 0, t1 = tiles_per_image, band = 0;
          } else {
            n0 = u / bands, n1 = n0 + 1, band = u % bands;
            t0 = tiles_per_image * band / bands, t1 = tiles_per_image * (band + 1) / bands;
          }
          at::Tensor gw_u = gw_units[u];
          for (int64_t n = n0; n < n1; ++n) {
            gin_t* target = band == 0 ? gin_p + n * image : priv_p + (n * (bands - 1) + band - 1) * image;
            for (int64_t t = t0; t < t1; ++t) {
              const int64_t p0 = t * P.tile, np = std::min(P.tile, L - p0);
              gather_tile<scalar_t, acc_t>(P, n, p0, p0 + np, cols.data_ptr<scalar_t>(), scratch.data());
              const at::Tensor c = cols.narrow(0, 0, np);
              const at::Tensor gc = gcols.narrow(0, 0, np);
              const at::Tensor g_tile = go_lc[n].narrow(0, p0, np);
              for (int64_t gg = 0; gg < groups; ++gg) {
                const at::Tensor gog = g_tile.narrow(1, gg * Cog, Cog);
                const at::Tensor cg = c.narrow(1, gg * KCg, KCg);
                if constexpr (std::is_same_v<scalar_t, acc_t>) {
                  gw_u[gg].addmm_(gog.t(), cg);
                } else {  // 16-bit: the tile's product in 16 bits, accumulated in fp32
                  gw_u[gg].add_(at::mm(gog.t(), cg));
                }
                at::Tensor dst = gc.narrow(1, gg * KCg, KCg);
                at::mm_out(dst, gog, w[gg]);
              }
              backward_tile<scalar_t, acc_t, gin_t>(P, n, p0, p0 + np, gcols.data_ptr<scalar_t>(), target, goff,
                                                    sgo, gmsk, sgm, scratch.data());
            }
          }
        }
      });
      // Fixed-order reductions of the units' accumulators.
      for (int64_t b = 0; b + 1 < bands; ++b) gin.view({N, image}).add_(private_gin.select(1, b));
      for (int64_t u = 0; u < units; ++u) gw.add_(gw_units[u]);
    });
  }
  const at::Tensor grad_input =
      gin.permute({0, 3, 1, 2}).to(input.options(), false, false, layout_of(input));
  const at::Tensor grad_weight = gw.view({Co, geo.kh, geo.kw, C / groups}).permute({0, 3, 1, 2}).to(
      weight.options(), false, false, at::MemoryFormat::Contiguous);
  return {grad_input, grad_offset, grad_mask, grad_weight, grad_bias.to(weight.scalar_type())};
}

}  // namespace nhwc
}  // namespace dcn
}  // namespace edvr_fast

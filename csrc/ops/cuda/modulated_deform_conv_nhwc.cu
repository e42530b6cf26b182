// The NHWC (channels-last) CUDA kernel of edvr_fast::modulated_deform_conv2d, opt-in with
// EDVR_FAST_DCN_KERNEL=nhwc (never run on a GPU yet; the column kernel stays the default). No column buffer
// in global memory: the bilinear gather writes tiles of samples to shared memory that are multiplied there
// with tiles of the (tap-major) weight, fp32 FMA (no tensor cores). Index/sampling math: dcn_nhwc_math.cuh.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "ops/cuda/dcn_nhwc_math.cuh"
#include "ops/cuda/dcn_nhwc_tiles.cuh"
#include "ops/cuda/modulated_deform_conv_nhwc_cuda.h"
#include "ops/modulated_deform_conv_driver.h"

namespace edvr_fast {
namespace dcn {
namespace nhwc_cuda {
namespace {

// 8 contiguous channels as acc_t: 2 x float4, one 16-byte load of 4 half2 / bfloat162, or scalars.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void load8(const scalar_t* p, acc_t (&v)[SEG]) {
#pragma unroll
  for (int j = 0; j < SEG; ++j) v[j] = static_cast<acc_t>(p[j]);
}
__device__ __forceinline__ void load8(const float* p, float (&v)[SEG]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void load8(const c10::Half* p, float (&v)[SEG]) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    v[2 * i] = f.x, v[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void load8(const c10::BFloat16* p, float (&v)[SEG]) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    v[2 * i] = f.x, v[2 * i + 1] = f.y;
  }
}

// grad_input += v for 8 contiguous channels (16-byte aligned): float4 atomics on sm_90, else scalar ones.
__device__ __forceinline__ void atomic_add8(float* p, const float (&v)[SEG]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float4*>(p), make_float4(v[0], v[1], v[2], v[3]));
  atomicAdd(reinterpret_cast<float4*>(p) + 1, make_float4(v[4], v[5], v[6], v[7]));
#else
#pragma unroll
  for (int j = 0; j < SEG; ++j) atomicAdd(p + j, v[j]);
#endif
}
__device__ __forceinline__ void atomic_add8(double* p, const double (&v)[SEG]) {
#pragma unroll
  for (int j = 0; j < SEG; ++j) atomicAdd(p + j, v[j]);
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void load8_scalar(const scalar_t* p, acc_t (&v)[SEG]) {
#pragma unroll
  for (int j = 0; j < SEG; ++j) v[j] = static_cast<acc_t>(p[j]);
}

template <typename acc_t>
__device__ __forceinline__ void atomic_add8_scalar(acc_t* p, const acc_t (&v)[SEG]) {
#pragma unroll
  for (int j = 0; j < SEG; ++j) atomicAdd(p + j, v[j]);
}

// Column values of a thread's segment: one sample and vector loads when the segment is one offset group
// and aligned, else the run-by-run reference path.
template <typename acc_t, typename scalar_t>
struct DeviceGather {
  const scalar_t* input;
  const scalar_t* offset;
  const scalar_t* mask;
  const Args& a;
  __device__ __forceinline__ void operator()(const Pixel& px, int k, int c, int nc, acc_t (&vals)[SEG]) const {
    if (a.vec_ok && nc == SEG) {
      gather_segment_fast<acc_t>(input, offset, mask, a, px, k, c, vals,
                                 [](const scalar_t* p, acc_t(&v)[SEG]) { load8(p, v); });
    } else {
      gather_channels<SEG, acc_t>(input, offset, mask, a, px, k, c, c + nc, vals);
    }
  }
};

template <typename scalar_t>
__global__ void __launch_bounds__(NT) forward_kernel(const scalar_t* __restrict__ input,
                                                     const scalar_t* __restrict__ offset,
                                                     const scalar_t* __restrict__ mask, const scalar_t* __restrict__ wt,
                                                     const scalar_t* __restrict__ bias, scalar_t* __restrict__ out,
                                                     Args a) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ ForwardSmem<acc_t> sm;
  const int t = threadIdx.x;
  const DeviceGather<acc_t, scalar_t> gather{input, offset, mask, a};
  acc_t acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = acc_t(0);
  for (int k = 0; k < a.geo.K(); ++k) {
    for (int c0 = 0; c0 < a.Cin_g; c0 += BK) {
      forward_load<acc_t>(a, wt, blockIdx.x, blockIdx.y, blockIdx.z, t, k, c0, sm, gather);
      __syncthreads();
      forward_mma(sm, t, acc);
      __syncthreads();
    }
  }
  forward_store(a, bias, out, blockIdx.x, blockIdx.y, blockIdx.z, t, acc);
}

// The column gradient of one tile in registers, then the sampling backward of each thread's segment:
// grad_input by vector atomics into the fp32 NHWC buffer, offset / mask gradients reduced over the lanes of an
// offset group by warp shuffles and added atomically (a group can span several tiles).
template <typename scalar_t>
__global__ void __launch_bounds__(NT) backward_data_kernel(
    const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset, const scalar_t* __restrict__ mask,
    const scalar_t* __restrict__ wt, const scalar_t* __restrict__ grad_out, at::opmath_type<scalar_t>* grad_input,
    at::opmath_type<scalar_t>* grad_offset, at::opmath_type<scalar_t>* grad_mask, Args a) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ DataSmem<acc_t> sm;
  const int t = threadIdx.x;
  const DataBlock b = data_block(a, blockIdx.y);
  acc_t gcol[SEG];
#pragma unroll
  for (int j = 0; j < SEG; ++j) gcol[j] = acc_t(0);
  for (int cb = 0; cb < a.Cog; cb += BC) {
    data_load<acc_t>(a, grad_out, wt, blockIdx.x, b, t, cb, sm);
    __syncthreads();
    data_accumulate(sm, t, gcol);
    __syncthreads();
  }
  const int seg = t % 4;
  const int64_t P = int64_t(blockIdx.x) * BM + t / 4;
  const int c = b.g * a.Cin_g + b.c0 + seg * SEG;  // absolute channel
  const int nc = segment_count(a, P, b.c0 + seg * SEG);
  const Pixel px = pixel_of(P < a.pixels() ? P : 0, a.geo);
  if (!a.single_group_segments) {  // segments may cross offset groups: run by run, scalar atomics
    if (nc > 0) backward_channels<SEG>(input, offset, mask, a, px, b.k, c, c + nc, gcol, grad_input, grad_offset,
                                       grad_mask);
    return;  // uniform over the launch: no thread reaches the shuffles below
  }
  int key = -1;  // one offset group per segment (nc is 0 or SEG)
  acc_t gy = acc_t(0), gx = acc_t(0), gm = acc_t(0);
  if (nc > 0) {
    if (a.vec_ok) {
      key = backward_segment_fast(input, offset, mask, a, px, b.k, c, gcol, grad_input, &gy, &gx, &gm,
                                  [](const scalar_t* p, acc_t(&v)[SEG]) { load8(p, v); },
                                  [](acc_t* p, const acc_t(&v)[SEG]) { atomic_add8(p, v); });
    } else {
      key = backward_segment_fast(input, offset, mask, a, px, b.k, c, gcol, grad_input, &gy, &gx, &gm,
                                  [](const scalar_t* p, acc_t(&v)[SEG]) { load8_scalar(p, v); },
                                  [](acc_t* p, const acc_t(&v)[SEG]) { atomic_add8_scalar(p, v); });
    }
  }
  // The 4 lanes of a pixel are adjacent in the warp: exchange keys and partials, sum per group.
  const unsigned full = 0xffffffffu;
  const int base = (t & 31) & ~3;
  int keys[4];
  acc_t ys[4], xs[4], ms[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    keys[i] = __shfl_sync(full, key, base + i);
    ys[i] = __shfl_sync(full, gy, base + i);
    xs[i] = __shfl_sync(full, gx, base + i);
    ms[i] = __shfl_sync(full, gm, base + i);
  }
  acc_t sy, sx, smk;
  if (reduce_lanes(keys, ys, xs, ms, seg, &sy, &sx, &smk)) {
    emit_offset_grads(a, px, b.k, key, sy, sx, smk, grad_offset, grad_mask);
  }
}

// Deterministic: each pixel slice writes its own partial sum; the host sums the slices.
template <typename scalar_t>
__global__ void __launch_bounds__(NT) grad_weight_kernel(const scalar_t* __restrict__ input,
                                                         const scalar_t* __restrict__ offset,
                                                         const scalar_t* __restrict__ mask,
                                                         const scalar_t* __restrict__ grad_out,
                                                         at::opmath_type<scalar_t>* __restrict__ partial, Args a,
                                                         int slices, int64_t tiles_per_slice) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int CPT = WeightSmem<acc_t>::CPT;
  __shared__ WeightSmem<acc_t> sm;
  const int t = threadIdx.x;
  const WeightBlock b = weight_block<acc_t>(a, blockIdx.x, blockIdx.y, blockIdx.z, slices);
  const DeviceGather<acc_t, scalar_t> gather{input, offset, mask, a};
  acc_t acc[CPT];
#pragma unroll
  for (int j = 0; j < CPT; ++j) acc[j] = acc_t(0);
  const int64_t tiles = (a.pixels() + BM - 1) / BM;
  const int64_t end = (b.s + 1) * tiles_per_slice < tiles ? (b.s + 1) * tiles_per_slice : tiles;
  for (int64_t tile = b.s * tiles_per_slice; tile < end; ++tile) {
    weight_load<acc_t>(a, grad_out, b, tile, t, sm, gather);
    __syncthreads();
    weight_accumulate(sm, t, acc);
    __syncthreads();
  }
  weight_store(a, b, t, acc, partial);
}

Strides4 strides_of(const at::Tensor& t) { return Strides4{t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

Args make_args(const Geometry& geo, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
               const at::Tensor& weight, int64_t groups) {
  Args a;
  a.geo = geo;
  a.N = input.size(0);
  a.groups = static_cast<int>(groups);
  a.Cin_g = static_cast<int>(weight.size(1));
  a.Cog = static_cast<int>(weight.size(0) / groups);
  a.os = strides_of(offset);
  a.ms = strides_of(mask);
  a.gos = a.os;
  a.gms = a.ms;
  a.single_group_segments = geo.channels_per_group() % SEG == 0 && a.Cin_g % SEG == 0;
  a.vec_ok = a.single_group_segments && aligned16(input.data_ptr());
  return a;
}

void check_sizes(const Args& a) {
  TORCH_CHECK(a.pixels() <= (int64_t(1) << 31) * BM, "modulated_deform_conv2d (CUDA, nhwc): too many pixels");
  const int chunks = (a.Cin_g + BK - 1) / BK;
  TORCH_CHECK(int64_t(a.groups) * a.geo.K() * chunks <= 65535 && (a.Cog + BN - 1) / BN <= 65535,
              "modulated_deform_conv2d (CUDA, nhwc): too many channels or taps for the launch grid; use "
              "EDVR_FAST_DCN_KERNEL=columns");
}

// [groups, K, Cin_g, Cog]: the weight tap-major (a weight-sized copy).
at::Tensor tap_major(const at::Tensor& weight, int64_t groups) {
  const int64_t Co = weight.size(0), Cin_g = weight.size(1), K = weight.size(2) * weight.size(3);
  return weight.reshape({groups, Co / groups, Cin_g, K}).permute({0, 3, 2, 1}).contiguous();
}

}  // namespace

at::Tensor forward(const at::Tensor& input_, const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                   at::IntArrayRef dilation, int64_t groups, int64_t offset_groups) {
  const Geometry geo = check_args("CUDA", at::kCUDA, input_, offset, mask, weight, stride, padding, dilation, groups,
                                  offset_groups);
  c10::cuda::CUDAGuard guard(input_.device());
  const int64_t N = input_.size(0), Co = weight.size(0);
  const at::Tensor input = input_.contiguous(at::MemoryFormat::ChannelsLast);  // no copy when it is already
  at::Tensor out = at::empty({N, Co, geo.Ho, geo.Wo}, input.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return out.contiguous(layout_of(input_));
  const Args a = make_args(geo, input, offset, mask, weight, groups);
  check_sizes(a);
  const at::Tensor wt = tap_major(weight, groups);
  at::Tensor b;
  if (bias.has_value() && bias->defined()) b = bias->to(input.scalar_type()).contiguous();
  const dim3 grid(static_cast<unsigned>((a.pixels() + BM - 1) / BM), static_cast<unsigned>((a.Cog + BN - 1) / BN),
                  static_cast<unsigned>(groups));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "edvr_dcn_nhwc_forward", [&] {
    forward_kernel<scalar_t><<<grid, NT, 0, stream>>>(
        input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), mask.data_ptr<scalar_t>(), wt.data_ptr<scalar_t>(),
        b.defined() ? b.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), a);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out.contiguous(layout_of(input_));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out_, const at::Tensor& input_, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t offset_groups) {
  const Geometry geo = check_args("CUDA", at::kCUDA, input_, offset, mask, weight, stride, padding, dilation, groups,
                                  offset_groups);
  const int64_t N = input_.size(0), Co = weight.size(0);
  check_grad_output(grad_out_, N, Co, geo);
  at::globalContext().alertNotDeterministic(
      "edvr_fast::modulated_deform_conv2d_backward (CUDA, EDVR_FAST_DCN_KERNEL=nhwc: grad_input, grad_offset and "
      "grad_mask are accumulated with atomicAdd)");
  c10::cuda::CUDAGuard guard(input_.device());
  const at::ScalarType dt = input_.scalar_type();
  const at::ScalarType acc_dt = dt == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor input = input_.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor grad_out = grad_out_.to(dt).contiguous(at::MemoryFormat::ChannelsLast);
  const auto acc_opts = input.options().dtype(acc_dt);
  at::Tensor grad_input = at::zeros(input.sizes(), acc_opts.memory_format(at::MemoryFormat::ChannelsLast));
  at::Tensor grad_offset = at::zeros_like(offset, acc_opts);  // offset's strides (dense) or contiguous
  at::Tensor grad_mask = at::zeros_like(mask, acc_opts);
  const int64_t Cin_g = weight.size(1), K = geo.K(), Cog = Co / groups;
  at::Tensor grad_wt = at::zeros({groups, K, Cin_g, Cog}, acc_opts);
  at::Tensor grad_bias = sum_over(grad_out, {0, 2, 3}, acc_dt);
  if (N > 0 && geo.L() > 0 && Cin_g > 0 && Cog > 0) {
    Args a = make_args(geo, input, offset, mask, weight, groups);
    a.gos = strides_of(grad_offset);
    a.gms = strides_of(grad_mask);
    a.vec_ok = a.vec_ok && aligned16(grad_input.data_ptr());
    check_sizes(a);
    const at::Tensor wt = tap_major(weight, groups);
    const int chunks = static_cast<int>((Cin_g + BK - 1) / BK);
    const int64_t tiles = (a.pixels() + BM - 1) / BM;
    auto stream = at::cuda::getCurrentCUDAStream();
    // grad_weight: enough pixel slices to fill the GPU, each a deterministic partial sum.
    const int64_t wbn = dt == at::kDouble ? WeightSmem<double>::WBN : WeightSmem<float>::WBN;
    const int64_t wblocks = int64_t(K) * chunks * ((Cog + wbn - 1) / wbn) * groups;
    const int slices = static_cast<int>(std::max<int64_t>(
        1, std::min<int64_t>({(tiles + 7) / 8, std::max<int64_t>(1, 2048 / wblocks), 65535 / groups})));
    const int64_t tiles_per_slice = (tiles + slices - 1) / slices;
    at::Tensor partial = at::empty({slices, groups, K, Cin_g, Cog}, acc_opts);
    const dim3 wgrid(static_cast<unsigned>(K * chunks), static_cast<unsigned>((Cog + wbn - 1) / wbn),
                     static_cast<unsigned>(groups * slices));
    const dim3 dgrid(static_cast<unsigned>(tiles), static_cast<unsigned>(groups * K * chunks));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dt, "edvr_dcn_nhwc_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      grad_weight_kernel<scalar_t><<<wgrid, NT, 0, stream>>>(
          input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), mask.data_ptr<scalar_t>(),
          grad_out.data_ptr<scalar_t>(), partial.data_ptr<acc_t>(), a, slices, tiles_per_slice);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      backward_data_kernel<scalar_t><<<dgrid, NT, 0, stream>>>(
          input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), mask.data_ptr<scalar_t>(), wt.data_ptr<scalar_t>(),
          grad_out.data_ptr<scalar_t>(), grad_input.data_ptr<acc_t>(), grad_offset.data_ptr<acc_t>(),
          grad_mask.data_ptr<acc_t>(), a);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    grad_wt = partial.sum(0);
  }
  // [groups, K, Cin_g, Cog] -> [Co, Cin_g, kh, kw]
  at::Tensor grad_weight = grad_wt.permute({0, 3, 2, 1}).reshape(weight.sizes());
  return {grad_input.to(dt).contiguous(layout_of(input_)), grad_offset.to(dt).contiguous(layout_of(offset)),
          grad_mask.to(dt).contiguous(layout_of(mask)), grad_weight.to(weight.scalar_type()),
          grad_bias.to(weight.scalar_type())};
}

}  // namespace nhwc_cuda
}  // namespace dcn
}  // namespace edvr_fast

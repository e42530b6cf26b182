// CUDA kernels of edvr_fast::modulated_deform_conv2d and its backward, registered for the CUDA key.
// Design: a gather kernel writes mask-modulated bilinear samples ("columns") for a chunk of n images,
// laid out [C*K, n*L] so that one large cuBLAS GEMM per group multiplies them with the weight
// (batched small GEMMs were slower and their speed varied with cuBLAS's heuristics); the backward
// recomputes the columns for grad_weight, then one fused kernel per work item produces grad_offset and
// grad_mask (no atomics) and scatters grad_input (atomics). The GEMMs and chunking live in
// ../modulated_deform_conv_driver.h (shared with the CPU kernels), the per-item math in
// modulated_deform_conv_math.cuh.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "ops/cuda/modulated_deform_conv_nhwc_cuda.h"
#include "ops/modulated_deform_conv_driver.h"

namespace edvr_fast {
namespace {

using dcn::ChunkPtrs;
using dcn::Geometry;

constexpr int kThreads = 256;

int64_t blocks_for(int64_t items) {
  const int64_t max_blocks = int64_t(1) << 30;
  return std::min<int64_t>((items + kThreads - 1) / kThreads, max_blocks);
}

template <typename scalar_t>
__global__ void columns_kernel(ChunkPtrs<scalar_t> p, scalar_t* __restrict__ cols, Geometry geo, int64_t items) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t flat = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; flat < items;
       flat += int64_t(blockDim.x) * gridDim.x) {
    dcn::gather_item<acc_t>(p, cols, geo, dcn::decompose(flat, geo));
  }
}

template <typename scalar_t, typename grad_in_t>
__global__ void columns_backward_kernel(ChunkPtrs<scalar_t> p, const scalar_t* __restrict__ grad_cols,
                                        grad_in_t* __restrict__ grad_input, scalar_t* __restrict__ grad_offset,
                                        scalar_t* __restrict__ grad_mask, Geometry geo, int64_t items) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t flat = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; flat < items;
       flat += int64_t(blockDim.x) * gridDim.x) {
    dcn::backward_item<acc_t>(p, grad_cols, grad_input, grad_offset, grad_mask, geo, dcn::decompose(flat, geo));
  }
}

struct CudaBackend {
  static constexpr const char* name = "CUDA";
  static constexpr at::DeviceType device_type = at::kCUDA;

  static void columns(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, at::Tensor& cols,
                      const Geometry& geo, int64_t n0, int64_t n) {
    const int64_t items = n * geo.offset_groups * geo.K() * geo.L();
    if (items == 0) return;
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "edvr_dcn_columns", [&] {
      columns_kernel<scalar_t><<<blocks_for(items), kThreads, 0, stream>>>(
          dcn::chunk_ptrs<scalar_t>(input, offset, mask, n0, n), cols.data_ptr<scalar_t>(), geo, items);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  static void columns_backward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                               const at::Tensor& grad_cols, at::Tensor& grad_input, at::Tensor& grad_offset,
                               at::Tensor& grad_mask, const Geometry& geo, int64_t n0, int64_t n) {
    const int64_t items = n * geo.offset_groups * geo.K() * geo.L();
    if (items == 0) return;
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "edvr_dcn_backward", [&] {
      using gin_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
      columns_backward_kernel<scalar_t, gin_t><<<blocks_for(items), kThreads, 0, stream>>>(
          dcn::chunk_ptrs<scalar_t>(input, offset, mask, n0, n), grad_cols.data_ptr<scalar_t>(),
          grad_input.narrow(0, n0, n).data_ptr<gin_t>(), grad_offset.narrow(0, n0, n).data_ptr<scalar_t>(),
          grad_mask.narrow(0, n0, n).data_ptr<scalar_t>(), geo, items);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

at::Tensor mdcn_forward_cuda(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                             const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                             int64_t groups, int64_t offset_groups) {
  TORCH_CHECK(input.is_cuda(), "modulated_deform_conv2d (CUDA): input must be a CUDA tensor");
  if (dcn::kernel_choice() == dcn::Kernel::Nhwc) {  // opt-in, not yet run on a GPU
    return dcn::nhwc_cuda::forward(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                                   offset_groups);
  }
  c10::cuda::CUDAGuard guard(input.device());
  return dcn::forward<CudaBackend>(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                                   offset_groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> mdcn_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t offset_groups) {
  TORCH_CHECK(input.is_cuda(), "modulated_deform_conv2d (CUDA): input must be a CUDA tensor");
  if (dcn::kernel_choice() == dcn::Kernel::Nhwc) {
    return dcn::nhwc_cuda::backward(grad_out, input, offset, mask, weight, stride, padding, dilation, groups,
                                    offset_groups);
  }
  at::globalContext().alertNotDeterministic(
      "edvr_fast::modulated_deform_conv2d_backward (CUDA): grad_input is accumulated with atomicAdd");
  c10::cuda::CUDAGuard guard(input.device());
  return dcn::backward<CudaBackend>(grad_out, input, offset, mask, weight, stride, padding, dilation, groups,
                                    offset_groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(edvr_fast, CUDA, m) {
  // EDVR_FAST_FORCE_FALLBACK leaves the CUDA key empty; Python then registers the pure-PyTorch kernel.
  if (dcn::fallback_forced()) return;
  m.impl("modulated_deform_conv2d", &mdcn_forward_cuda);
  m.impl("modulated_deform_conv2d_backward", &mdcn_backward_cuda);
}

}  // namespace edvr_fast

// CPU kernels of edvr_fast::modulated_deform_conv2d and its backward, registered for the CPU key: the
// NHWC kernel (modulated_deform_conv_nhwc_cpu.cpp) by default where its AVX2 path applies, the column
// kernel below elsewhere (faster than the NHWC kernel's scalar rows, BENCHMARKS.md); EDVR_FAST_DCN_KERNEL
// picks one (columns is the benchmarks' baseline, the CPU kernel before nhwc). The column kernel has
// the design of the CUDA kernels (../modulated_deform_conv_driver.h): a column
// gather, GEMMs, and a fused column-gradient step, with the per-item math of cuda/modulated_deform_conv_math.cuh.
// Threads (at::parallel_for) split the gather by work item; the backward gives each (image, offset
// group) to one thread, which owns that group's grad_input channels: no atomics, deterministic.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>

#include "ops/cpu/modulated_deform_conv_nhwc_cpu.h"
#include "ops/modulated_deform_conv_driver.h"

namespace edvr_fast {
namespace {

using dcn::Geometry;
using dcn::Item;

struct CpuBackend {
  static constexpr const char* name = "CPU";
  static constexpr at::DeviceType device_type = at::kCPU;

  static void columns(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, at::Tensor& cols,
                      const Geometry& geo, int64_t n0, int64_t n) {
    const int64_t items = n * geo.offset_groups * geo.K() * geo.L();
    if (items == 0) return;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "edvr_dcn_columns_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto p = dcn::chunk_ptrs<scalar_t>(input, offset, mask, n0, n);
      scalar_t* out = cols.data_ptr<scalar_t>();
      // Tasks are (image, group, tap) rows of output pixels: nested loops, no per-item index division.
      at::parallel_for(0, n * geo.offset_groups * geo.K(), 1, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
          Item it;
          it.k = static_cast<int>(task % geo.K());
          it.g = static_cast<int>((task / geo.K()) % geo.offset_groups);
          it.n = task / (int64_t(geo.K()) * geo.offset_groups);
          for (it.ho = 0; it.ho < geo.Ho; ++it.ho) {
            for (it.wo = 0; it.wo < geo.Wo; ++it.wo) dcn::gather_item<acc_t>(p, out, geo, it);
          }
        }
      });
    });
  }

  static void columns_backward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                               const at::Tensor& grad_cols, at::Tensor& grad_input, at::Tensor& grad_offset,
                               at::Tensor& grad_mask, const Geometry& geo, int64_t n0, int64_t n) {
    const int64_t units = n * geo.offset_groups;  // (image, offset group): disjoint grad_input channels
    if (units == 0 || geo.L() == 0) return;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "edvr_dcn_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      using gin_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
      const auto p = dcn::chunk_ptrs<scalar_t>(input, offset, mask, n0, n);
      const scalar_t* gc = grad_cols.data_ptr<scalar_t>();
      gin_t* gin = grad_input.narrow(0, n0, n).data_ptr<gin_t>();
      scalar_t* goff = grad_offset.narrow(0, n0, n).data_ptr<scalar_t>();
      scalar_t* gmask = grad_mask.narrow(0, n0, n).data_ptr<scalar_t>();
      at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
        for (int64_t u = begin; u < end; ++u) {
          Item it;
          it.n = u / geo.offset_groups;
          it.g = static_cast<int>(u % geo.offset_groups);
          for (it.k = 0; it.k < geo.K(); ++it.k) {
            for (it.ho = 0; it.ho < geo.Ho; ++it.ho) {
              for (it.wo = 0; it.wo < geo.Wo; ++it.wo) {
                dcn::backward_item<acc_t>(p, gc, gin, goff, gmask, geo, it);
              }
            }
          }
        }
      });
    });
  }
};

bool use_nhwc(const at::Tensor& input, int64_t groups, int64_t offset_groups) {
  switch (dcn::kernel_choice()) {
    case dcn::Kernel::Nhwc:
      return true;
    case dcn::Kernel::Columns:
      return false;
    default:
      return dcn::nhwc::has_fast_path(input, groups, offset_groups);
  }
}

at::Tensor mdcn_forward_cpu(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                            const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t offset_groups) {
  if (use_nhwc(input, groups, offset_groups)) {
    return dcn::nhwc::forward(input, offset, mask, weight, bias, stride, padding, dilation, groups, offset_groups);
  }
  return dcn::forward<CpuBackend>(input, offset, mask, weight, bias, stride, padding, dilation, groups, offset_groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> mdcn_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t offset_groups) {
  if (use_nhwc(input, groups, offset_groups)) {
    return dcn::nhwc::backward(grad_out, input, offset, mask, weight, stride, padding, dilation, groups,
                               offset_groups);
  }
  return dcn::backward<CpuBackend>(grad_out, input, offset, mask, weight, stride, padding, dilation, groups,
                                   offset_groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(edvr_fast, CPU, m) {
  // EDVR_FAST_FORCE_FALLBACK leaves the CPU key empty; Python then registers the pure-PyTorch kernel.
  if (dcn::fallback_forced()) return;
  m.impl("modulated_deform_conv2d", &mdcn_forward_cpu);
  m.impl("modulated_deform_conv2d_backward", &mdcn_backward_cpu);
}

}  // namespace edvr_fast

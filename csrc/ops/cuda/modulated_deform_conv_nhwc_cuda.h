// The NHWC (channels-last) CUDA kernel of edvr_fast::modulated_deform_conv2d (modulated_deform_conv_nhwc.cu),
// selected by EDVR_FAST_DCN_KERNEL=nhwc; any input layout, results in the input's layout.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace edvr_fast {
namespace dcn {
namespace nhwc_cuda {

at::Tensor forward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                   const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t offset_groups);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t offset_groups);

}  // namespace nhwc_cuda
}  // namespace dcn
}  // namespace edvr_fast

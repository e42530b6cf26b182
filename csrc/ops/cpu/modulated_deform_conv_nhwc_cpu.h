// The NHWC (channels-last) CPU kernel of edvr_fast::modulated_deform_conv2d (the CPU default; see
// modulated_deform_conv_nhwc_cpu.cpp). Takes any input layout; output and grad_input have the input's.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace edvr_fast {
namespace dcn {
namespace nhwc {

// True where the AVX2 path applies (fp32, offset groups of 8k channels inside one conv group, an AVX2 +
// FMA CPU): the CPU default then; elsewhere the column kernel is faster than this kernel's scalar rows.
bool has_fast_path(const at::Tensor& input, int64_t groups, int64_t offset_groups);

at::Tensor forward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                   const at::Tensor& weight, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t offset_groups);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t offset_groups);

}  // namespace nhwc
}  // namespace dcn
}  // namespace edvr_fast

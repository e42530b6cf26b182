// Autocast for edvr_fast::modulated_deform_conv2d: like conv2d, every floating input is cast to the
// autocast dtype (fp16/bf16) and the op runs natively in it with fp32 accumulation. torchvision
// instead up-casts deform_conv2d to fp32; doing that here would forfeit the bf16 speed-up.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace edvr_fast {
namespace {

template <c10::DispatchKey key, c10::DeviceType device>
at::Tensor mdcn_autocast(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                         const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                         int64_t groups, int64_t offset_groups) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(key);
  const at::ScalarType dt = at::autocast::get_autocast_dtype(device);
  auto cast = [dt](const at::Tensor& t) {
    return (t.is_floating_point() && t.scalar_type() != at::kDouble) ? t.to(dt) : t;
  };
  std::optional<at::Tensor> b;
  if (bias.has_value() && bias->defined()) b = cast(*bias);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("edvr_fast::modulated_deform_conv2d", "")
                       .typed<decltype(mdcn_autocast<key, device>)>();
  return op.call(cast(input), cast(offset), cast(mask), cast(weight), b, stride, padding, dilation, groups,
                 offset_groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(edvr_fast, AutocastCUDA, m) {
  m.impl("modulated_deform_conv2d", &mdcn_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>);
}

TORCH_LIBRARY_IMPL(edvr_fast, AutocastCPU, m) {
  m.impl("modulated_deform_conv2d", &mdcn_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>);
}

}  // namespace edvr_fast

// Schema of edvr_fast::modulated_deform_conv2d and its backward (DCNv2). Kernels register per key:
// CPU in cpu/, CUDA in cuda/ (both through modulated_deform_conv_driver.h), autocast in autocast/, autograd from Python
// (edvr_fast/ops/_registry.py, which keeps an identical copy of these strings for source checkouts).
#include <torch/library.h>

TORCH_LIBRARY(edvr_fast, m) {
  m.def(
      "modulated_deform_conv2d(Tensor input, Tensor offset, Tensor mask, Tensor weight, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, int offset_groups) -> Tensor");
  m.def(
      "modulated_deform_conv2d_backward(Tensor grad_output, Tensor input, Tensor offset, Tensor mask, "
      "Tensor weight, int[2] stride, int[2] padding, int[2] dilation, int groups, int offset_groups) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

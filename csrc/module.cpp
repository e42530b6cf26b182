// The edvr_fast._C module: loading it registers the operators (TORCH_LIBRARY in csrc/ops) and binds
// the plain functions (build facts; the fused loader later) with pybind11.
#include <torch/extension.h>

#ifndef EDVR_FAST_TORCH_VERSION
#define EDVR_FAST_TORCH_VERSION "unknown"
#endif

namespace edvr_fast {
bool built_with_cuda() {
#ifdef EDVR_FAST_WITH_CUDA
  return true;
#else
  return false;
#endif
}
namespace loader {
void bind_loader(pybind11::module_& m);  // csrc/loader/gather_binding.cpp
}
}  // namespace edvr_fast

PYBIND11_MODULE(_C, m) {
  m.doc() = "edvr_fast compiled extension: DCNv2 operators (torch.ops.edvr_fast) and helpers";
  m.def("built_with_cuda", &edvr_fast::built_with_cuda, "True when the CUDA kernels were compiled in");
  m.attr("torch_version") = EDVR_FAST_TORCH_VERSION;  // the torch this module was compiled against
  edvr_fast::loader::bind_loader(m);
}

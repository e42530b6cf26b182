// Host side of edvr_fast::modulated_deform_conv2d shared by the CPU and CUDA kernels: argument checks,
// geometry, chunking of the batch under a column budget, and the GEMMs around the two device-specific
// steps (the column gather, and the column-gradient step that yields grad_input/offset/mask).
// A backend is a struct with two static functions:
//   columns(input, offset, mask, cols, geo, n0, n)   cols [C*K, n*L] of images n0 .. n0+n-1
//   columns_backward(input, offset, mask, grad_cols, grad_input, grad_offset, grad_mask, geo, n0, n)
// and a name for error messages.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <strings.h>
#include <tuple>
#include <vector>

#include "ops/cuda/modulated_deform_conv_math.cuh"

namespace edvr_fast {
namespace dcn {

// Upper bound of the column buffer. 256 MiB holds a batch of 16 at PCD level 1 (64x64, 64 ch, 3x3)
// in one chunk; torchvision's unchunked buffer for batch 16 at 256x256 would be 2.4 GB.
// EDVR_FAST_DCN_COLUMN_BUDGET_MB overrides it (tests use it to exercise chunking at small sizes).
constexpr int64_t kColumnBudgetBytes = int64_t(256) << 20;

inline int64_t column_budget_bytes() {
  const char* v = std::getenv("EDVR_FAST_DCN_COLUMN_BUDGET_MB");
  if (v != nullptr && *v != '\0') {
    const double mb = std::atof(v);
    if (mb > 0) return static_cast<int64_t>(mb * 1024.0 * 1024.0);
  }
  return kColumnBudgetBytes;
}

// EDVR_FAST_FORCE_FALLBACK set (and not 0/false/no): the compiled kernels stay unregistered and Python
// registers the pure-PyTorch fallback in their place.
inline bool fallback_forced() {
  const char* v = std::getenv("EDVR_FAST_FORCE_FALLBACK");
  if (v == nullptr || *v == '\0') return false;
  return std::strcmp(v, "0") != 0 && strcasecmp(v, "false") != 0 && strcasecmp(v, "no") != 0;
}

// EDVR_FAST_DCN_KERNEL picks the kernel: "columns" (a C*K x n*L column buffer and GEMMs: the CUDA
// default, and the CPU kernel before the NHWC one), "nhwc" (tiles of channels-last columns: the CPU
// default; on CUDA an opt-in kernel not yet verified on a GPU), unset/"default" for each device's default.
enum class Kernel { Default, Columns, Nhwc };

inline Kernel kernel_choice() {
  const char* v = std::getenv("EDVR_FAST_DCN_KERNEL");
  if (v == nullptr || *v == '\0' || strcasecmp(v, "default") == 0) return Kernel::Default;
  if (strcasecmp(v, "columns") == 0) return Kernel::Columns;
  if (strcasecmp(v, "nhwc") == 0) return Kernel::Nhwc;
  TORCH_CHECK_VALUE(false, "EDVR_FAST_DCN_KERNEL=", v, " is not a DCN kernel; use default, columns or nhwc");
}

// The memory format of a result that follows t's (as conv2d does): channels-last only when t is
// channels-last and not also plain contiguous (C == 1 or H == W == 1 are both).
inline at::MemoryFormat layout_of(const at::Tensor& t) {
  return (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast))
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

inline Geometry make_geometry(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t offset_groups) {
  Geometry geo;
  geo.C = static_cast<int>(input.size(1));
  geo.H = static_cast<int>(input.size(2));
  geo.W = static_cast<int>(input.size(3));
  geo.kh = static_cast<int>(weight.size(2));
  geo.kw = static_cast<int>(weight.size(3));
  geo.sh = static_cast<int>(stride[0]);
  geo.sw = static_cast<int>(stride[1]);
  geo.ph = static_cast<int>(padding[0]);
  geo.pw = static_cast<int>(padding[1]);
  geo.dh = static_cast<int>(dilation[0]);
  geo.dw = static_cast<int>(dilation[1]);
  geo.offset_groups = static_cast<int>(offset_groups);
  geo.Ho = (geo.H + 2 * geo.ph - (geo.dh * (geo.kh - 1) + 1)) / geo.sh + 1;
  geo.Wo = (geo.W + 2 * geo.pw - (geo.dw * (geo.kw - 1) + 1)) / geo.sw + 1;
  return geo;
}

// Every argument check (device, dtype, shapes, groups); returns the geometry it worked out on the way.
inline Geometry check_args(const char* backend, at::DeviceType device_type, const at::Tensor& input,
                           const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& weight,
                           at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                           int64_t offset_groups) {
  TORCH_CHECK(input.device().type() == device_type, "modulated_deform_conv2d (", backend, "): input must be a ",
              backend, " tensor, got one on ", input.device());
  for (const at::Tensor* t : {&offset, &mask, &weight}) {
    TORCH_CHECK(t->device() == input.device(), "modulated_deform_conv2d: all tensors must be on ",
                input.device(), ", got one on ", t->device());
    TORCH_CHECK(t->scalar_type() == input.scalar_type(), "modulated_deform_conv2d: dtypes differ (",
                input.scalar_type(), " vs ", t->scalar_type(), ")");
  }
  TORCH_CHECK(input.dim() == 4 && offset.dim() == 4 && mask.dim() == 4 && weight.dim() == 4,
              "modulated_deform_conv2d: input, offset, mask and weight must be 4-D");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "modulated_deform_conv2d: stride, padding and dilation must have two values");
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0 && dilation[0] > 0 && dilation[1] > 0 && padding[0] >= 0 &&
                  padding[1] >= 0,
              "modulated_deform_conv2d: stride and dilation must be positive, padding non-negative");
  const int64_t C = input.size(1);
  TORCH_CHECK(groups > 0 && C % groups == 0 && weight.size(0) % groups == 0 && weight.size(1) * groups == C,
              "modulated_deform_conv2d: weight ", weight.sizes(), " does not fit input channels ", C,
              " with groups=", groups);
  TORCH_CHECK(offset_groups > 0 && C % offset_groups == 0, "modulated_deform_conv2d: offset_groups=",
              offset_groups, " must divide input channels ", C);
  const Geometry geo = make_geometry(input, weight, stride, padding, dilation, offset_groups);
  TORCH_CHECK(geo.Ho > 0 && geo.Wo > 0, "modulated_deform_conv2d: input too small for the kernel");
  const int64_t K = geo.K();
  TORCH_CHECK(offset.size(0) == input.size(0) && offset.size(1) == 2 * offset_groups * K &&
                  offset.size(2) == geo.Ho && offset.size(3) == geo.Wo,
              "modulated_deform_conv2d: offset must have shape [", input.size(0), ", ", 2 * offset_groups * K,
              ", ", geo.Ho, ", ", geo.Wo, "], got ", offset.sizes());
  TORCH_CHECK(mask.size(0) == input.size(0) && mask.size(1) == offset_groups * K && mask.size(2) == geo.Ho &&
                  mask.size(3) == geo.Wo,
              "modulated_deform_conv2d: mask must have shape [", input.size(0), ", ", offset_groups * K, ", ",
              geo.Ho, ", ", geo.Wo, "], got ", mask.sizes());
  return geo;
}

inline void check_grad_output(const at::Tensor& g, int64_t N, int64_t Co, const Geometry& geo) {
  TORCH_CHECK(g.dim() == 4 && g.size(0) == N && g.size(1) == Co && g.size(2) == geo.Ho && g.size(3) == geo.Wo,
              "modulated_deform_conv2d_backward: grad_output must have shape [", N, ", ", Co, ", ", geo.Ho, ", ",
              geo.Wo, "], got ", g.sizes());
}

// What forward and backward start from: checked arguments, contiguous operands, the geometry (computed once).
struct Operands {
  at::Tensor input, offset, mask, weight;
  Geometry geo;
};

template <typename Backend>
Operands prepare(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& weight,
                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                 int64_t offset_groups) {
  const Geometry geo = check_args(Backend::name, Backend::device_type, input, offset, mask, weight, stride, padding,
                                  dilation, groups, offset_groups);
  return Operands{input.contiguous(), offset.contiguous(), mask.contiguous(), weight.contiguous(), geo};
}

// Sum over dims with an explicit accumulation dtype; spelled out because the braced-list overloads of
// at::sum are ambiguous in some PyTorch versions (2.11).
inline at::Tensor sum_over(const at::Tensor& t, std::vector<int64_t> dims, at::ScalarType dtype) {
  return at::sum(t, at::OptionalIntArrayRef(at::IntArrayRef(dims)), false, std::optional<at::ScalarType>(dtype));
}

inline int64_t chunk_size(int64_t N, const Geometry& geo, size_t elem) {
  const int64_t per_image = int64_t(geo.C) * geo.K() * geo.L() * static_cast<int64_t>(elem);
  return std::max<int64_t>(1, std::min<int64_t>(N, column_budget_bytes() / std::max<int64_t>(per_image, 1)));
}

// The chunk [n0, n0 + n) of a contiguous [N, ...] tensor as raw pointers for the per-item math.
template <typename scalar_t>
ChunkPtrs<scalar_t> chunk_ptrs(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, int64_t n0,
                               int64_t n) {
  return ChunkPtrs<scalar_t>{input.narrow(0, n0, n).data_ptr<scalar_t>(), offset.narrow(0, n0, n).data_ptr<scalar_t>(),
                             mask.narrow(0, n0, n).data_ptr<scalar_t>(), n};
}

template <typename Backend>
at::Tensor forward(const at::Tensor& input_, const at::Tensor& offset_, const at::Tensor& mask_,
                   const at::Tensor& weight_, const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t offset_groups) {
  const Operands op =
      prepare<Backend>(input_, offset_, mask_, weight_, stride, padding, dilation, groups, offset_groups);
  const at::Tensor &input = op.input, &offset = op.offset, &mask = op.mask, &weight = op.weight;
  const Geometry& geo = op.geo;
  const int64_t N = input.size(0), Co = weight.size(0), K = geo.K(), L = geo.L();
  const int64_t Kg = weight.size(1) * K, Cog = Co / groups;
  at::Tensor out = at::empty({N, Co, L}, input.options());
  if (N == 0) return out.view({N, Co, geo.Ho, geo.Wo});
  const at::Tensor w = weight.view({groups, Cog, Kg});
  const int64_t chunk = chunk_size(N, geo, input.element_size());
  const int64_t CK = int64_t(geo.C) * K;
  at::Tensor cols_buf = at::empty({CK * chunk * L}, input.options());
  at::Tensor out_buf = chunk > 1 ? at::empty({Co * chunk * L}, input.options()) : at::Tensor();
  for (int64_t n0 = 0; n0 < N; n0 += chunk) {
    const int64_t n = std::min(chunk, N - n0);
    at::Tensor cols = cols_buf.narrow(0, 0, CK * n * L).view({CK, n * L});
    Backend::columns(input, offset, mask, cols, geo, n0, n);
    // One image: the GEMM writes its output in place; several: into [Co, n*L], then one transposing copy.
    at::Tensor out_cm = n == 1 ? out.narrow(0, n0, 1).view({Co, L}) : out_buf.narrow(0, 0, Co * n * L).view({Co, n * L});
    for (int64_t g = 0; g < groups; ++g) {
      at::Tensor dst = out_cm.narrow(0, g * Cog, Cog);
      at::mm_out(dst, w[g], cols.narrow(0, g * Kg, Kg));  // [Cog, Kg] x [Kg, n*L]
    }
    if (n > 1) out.narrow(0, n0, n).copy_(out_cm.view({Co, n, L}).transpose(0, 1));
  }
  if (bias.has_value() && bias->defined()) out.add_(bias->to(out.scalar_type()).view({1, Co, 1}));
  return out.view({N, Co, geo.Ho, geo.Wo}).contiguous(layout_of(input_));  // the input's layout
}

template <typename Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out_, const at::Tensor& input_, const at::Tensor& offset_, const at::Tensor& mask_,
    const at::Tensor& weight_, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t offset_groups) {
  const Operands op =
      prepare<Backend>(input_, offset_, mask_, weight_, stride, padding, dilation, groups, offset_groups);
  const at::Tensor &input = op.input, &offset = op.offset, &mask = op.mask, &weight = op.weight;
  const Geometry& geo = op.geo;
  const int64_t N = input.size(0), Co = weight.size(0), K = geo.K(), L = geo.L();
  check_grad_output(grad_out_, N, Co, geo);
  const at::Tensor grad_out = grad_out_.to(input.scalar_type()).contiguous().view({N, Co, L});
  const int64_t Kg = weight.size(1) * K, Cog = Co / groups;
  const bool reduced = input.scalar_type() == at::kHalf || input.scalar_type() == at::kBFloat16;
  // fp16/bf16: grad_input accumulates in an fp32 buffer, cast once at the end.
  at::Tensor grad_input = at::zeros(input.sizes(), input.options().dtype(reduced ? at::kFloat : input.scalar_type()));
  at::Tensor grad_offset = at::empty(offset.sizes(), offset.options());
  at::Tensor grad_mask = at::empty(mask.sizes(), mask.options());
  at::Tensor grad_weight = at::zeros({groups, Cog, Kg}, weight.options().dtype(at::kFloat));
  if (weight.scalar_type() == at::kDouble) grad_weight = grad_weight.to(at::kDouble);
  at::Tensor grad_bias = sum_over(grad_out, {0, 2}, reduced ? at::kFloat : grad_out.scalar_type());
  if (N > 0) {
    const at::Tensor w = weight.view({groups, Cog, Kg});
    const int64_t chunk = chunk_size(N, geo, input.element_size());
    const int64_t CK = int64_t(geo.C) * K;
    at::Tensor cols_buf = at::empty({CK * chunk * L}, input.options());
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
      const int64_t n = std::min(chunk, N - n0);
      at::Tensor cols = cols_buf.narrow(0, 0, CK * n * L).view({CK, n * L});
      Backend::columns(input, offset, mask, cols, geo, n0, n);
      // grad_output as [Co, n*L], the layout of the columns (a view for one image, else one copy)
      const at::Tensor go = grad_out.narrow(0, n0, n).transpose(0, 1).contiguous().view({Co, n * L});
      for (int64_t g = 0; g < groups; ++g) {  // [Cog, n*L] x [n*L, Kg]: one GEMM reduces over the chunk
        grad_weight[g].add_(at::mm(go.narrow(0, g * Cog, Cog), cols.narrow(0, g * Kg, Kg).t()));
      }
      // cols now receives the column gradient W^T x grad_out (the same buffer; stream-ordered on CUDA).
      for (int64_t g = 0; g < groups; ++g) {
        at::Tensor dst = cols.narrow(0, g * Kg, Kg);
        at::mm_out(dst, w[g].t(), go.narrow(0, g * Cog, Cog));
      }
      Backend::columns_backward(input, offset, mask, cols, grad_input, grad_offset, grad_mask, geo, n0, n);
    }
  }
  // Gradients in the layouts of their inputs (what the fake kernel says).
  return {grad_input.to(input.scalar_type()).contiguous(layout_of(input_)), grad_offset.contiguous(layout_of(offset_)),
          grad_mask.contiguous(layout_of(mask_)),
          grad_weight.view(weight.sizes()).to(weight.scalar_type()), grad_bias.to(weight.scalar_type())};
}

}  // namespace dcn
}  // namespace edvr_fast

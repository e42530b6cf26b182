// pybind11 face of the partial decoders: `edvr_fast._C.FrameDecoder` (a pool that decodes only what each
// crop needs and writes the batch, GIL released), `decode_crop` (one crop, for tests), `encode_png_banded`
// (the pack's PNG writer, with EDVR_FAST_WITH_PNG) and `loader_codecs` (the codecs this build has: "jpeg" with
// EDVR_FAST_WITH_JPEG, "png" with EDVR_FAST_WITH_PNG).
#include <pybind11/numpy.h>
#include <torch/extension.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "loader/decode_core.h"
#if defined(EDVR_FAST_WITH_JPEG) || defined(EDVR_FAST_WITH_PNG)
#include "loader/codec.h"
#endif
#ifdef EDVR_FAST_WITH_PNG
#include "loader/png_banded.h"
#endif

namespace py = pybind11;

namespace edvr_fast {
namespace loader {

std::vector<CropTask> make_plan_tasks(const py::sequence& srcs, const py::array_t<int64_t>& plan, torch::Tensor& lq,
                                      torch::Tensor& gt, OutType* out, bool encoded);  // gather_binding.cpp

namespace {

std::vector<std::string> codecs() {
  std::vector<std::string> names;
#ifdef EDVR_FAST_WITH_JPEG
  names.push_back("jpeg");
#endif
#ifdef EDVR_FAST_WITH_PNG
  names.push_back("png");
#endif
  return names;
}

#ifdef EDVR_FAST_WITH_JPEG
std::string decode_jpeg_tight(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h, int w,
                              DecodedRegion* out) {
  return decode_jpeg_region(data, size, H, W, C, top, left, h, w, out, false);
}
#endif

DecodeFn codec_fn(const std::string& name, bool context = true) {
#ifdef EDVR_FAST_WITH_JPEG
  if (name == "jpeg") return context ? decode_jpeg : decode_jpeg_tight;
#endif
#ifdef EDVR_FAST_WITH_PNG
  if (name == "png") return decode_png;
#endif
  (void)context;
  throw py::value_error("this build of edvr_fast._C has no '" + name + "' decoder");
}

class FrameDecoder {
 public:
  explicit FrameDecoder(int num_threads) : pool_(num_threads) {}

  uint64_t submit(const py::sequence& srcs, const py::array_t<int64_t>& plan, const std::string& codec,
                  torch::Tensor lq, torch::Tensor gt) {
    const DecodeFn fn = codec_fn(codec);
    OutType out;
    std::vector<CropTask> crops = make_plan_tasks(srcs, plan, lq, gt, &out, true);
    std::vector<DecodeTask> tasks(crops.size());
    for (size_t i = 0; i < crops.size(); ++i) tasks[i].crop = crops[i], tasks[i].decode = fn;
    return pool_.submit(std::move(tasks), out);
  }

  void wait(uint64_t ticket) {
    py::gil_scoped_release release;
    pool_.wait(ticket);  // std::runtime_error -> RuntimeError("plan row i: why")
  }

  bool done(uint64_t ticket) { return pool_.done(ticket); }
  int num_threads() const { return pool_.num_threads(); }

 private:
  DecodePool pool_;
};

py::array_t<uint8_t> decode_crop(const py::buffer& data, const std::string& codec, int H, int W, int C, int top,
                                 int left, int h, int w, bool context) {
  const DecodeFn fn = codec_fn(codec, context);
  py::buffer_info info = data.request();
  CropTask geometry;
  geometry.src = static_cast<const uint8_t*>(info.ptr);
  geometry.dst = &geometry;
  geometry.H = H, geometry.W = W, geometry.C = C, geometry.top = top, geometry.left = left, geometry.h = h;
  geometry.w = w;
  std::string why = check_geometry(geometry);
  if (!why.empty()) throw py::value_error(why);
  DecodedRegion r;
  {
    py::gil_scoped_release release;
    why = fn(static_cast<const uint8_t*>(info.ptr), info.size * info.itemsize, H, W, C, top, left, h, w, &r);
  }
  if (!why.empty()) throw py::value_error(why);
  if (r.top > top || r.left > left || r.top + r.rows < top + h || r.left + r.cols < left + w) {
    throw std::runtime_error("decoder returned a region that does not cover the crop");
  }
  py::array_t<uint8_t> img({h, w, C});
  uint8_t* dst = img.mutable_data();
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = r.pixels.data() + (static_cast<size_t>(top - r.top + y) * r.cols + (left - r.left)) * C;
    std::memcpy(dst + static_cast<size_t>(y) * w * C, row, static_cast<size_t>(w) * C);
  }
  return img;
}

#ifdef EDVR_FAST_WITH_PNG
py::bytes encode_png_banded(const py::array_t<uint8_t, py::array::c_style>& img, int band_rows, int level) {
  if (img.ndim() != 3 && img.ndim() != 2) throw py::value_error("expected an H x W x C (or H x W) uint8 frame");
  const int H = static_cast<int>(img.shape(0)), W = static_cast<int>(img.shape(1));
  const int C = img.ndim() == 3 ? static_cast<int>(img.shape(2)) : 1;
  std::vector<uint8_t> out;
  std::string why;
  {
    py::gil_scoped_release release;
    why = encode_banded_png(img.data(), H, W, C, band_rows, level, &out);
  }
  if (!why.empty()) throw py::value_error(why);
  return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}
#endif

}  // namespace

void bind_decoder(py::module_& m) {
  py::class_<FrameDecoder>(m, "FrameDecoder",
                           "Persistent C++ threads that decode only the needed part of PNG/JPEG frames and write "
                           "their crops into batch tensors")
      .def(py::init<int>(), py::arg("num_threads"))
      .def("submit", &FrameDecoder::submit, py::arg("srcs"), py::arg("plan"), py::arg("codec"), py::arg("lq"),
           py::arg("gt"), "Queue a batch plan of encoded frames; returns a ticket (keep srcs/tensors alive)")
      .def("wait", &FrameDecoder::wait, py::arg("ticket"),
           "Block (GIL released) until the batch is written; RuntimeError('plan row i: ...') if a frame is bad")
      .def("done", &FrameDecoder::done, py::arg("ticket"))
      .def_property_readonly("num_threads", &FrameDecoder::num_threads);
  m.def("decode_crop", &decode_crop, py::arg("data"), py::arg("codec"), py::arg("H"), py::arg("W"), py::arg("C"),
        py::arg("top"), py::arg("left"), py::arg("h"), py::arg("w"), py::arg("context") = true,
        "Decode crop (top, left, h, w) of an H x W x C encoded frame with the partial decoder: uint8 h x w x C");
#ifdef EDVR_FAST_WITH_PNG
  m.def("encode_png_banded", &encode_png_banded, py::arg("img"), py::arg("band_rows") = kPngBandRows,
        py::arg("level") = 3,
        "Encode a uint8 BGR (H x W x 3) or gray frame as a banded PNG (a standard PNG whose row bands the fused "
        "loader can decode on their own; see FORMAT.md); GIL released");
#endif
  py::tuple names(codecs().size());
  for (size_t i = 0; i < codecs().size(); ++i) names[i] = py::str(codecs()[i]);
  m.attr("loader_codecs") = names;
}

}  // namespace loader
}  // namespace edvr_fast

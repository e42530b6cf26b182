// pybind11 face of the fused loader core: `edvr_fast._C.FrameGather` turns a batch plan (frame buffers +
// an int64 table of crops/flags) into CropTasks writing into the batch tensors, with the GIL released.
#include <pybind11/numpy.h>
#include <torch/extension.h>

#include <cstdint>
#include <string>
#include <vector>

#include "loader/gather_core.h"

namespace py = pybind11;

namespace edvr_fast {
namespace loader {
namespace {

// Columns of the plan table, one row per frame (see edvr_fast/data/loader.py).
enum Col { kKind = 0, kSlot, kH, kW, kC, kTop, kLeft, kCropH, kCropW, kFlags, kNumCols };

OutType out_type_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return OutType::kFloat32;
    case torch::kBFloat16: return OutType::kBFloat16;
    case torch::kFloat16: return OutType::kFloat16;
    default: throw py::value_error("batch tensors must be float32, bfloat16 or float16");
  }
}

void check_out(const torch::Tensor& t, const char* name) {
  if (!t.device().is_cpu() || !t.is_contiguous() || t.dim() < 3) {
    throw py::value_error(std::string(name) + " must be a contiguous CPU tensor [..., C, H, W]");
  }
}

// Builds and checks the tasks; must run with the GIL held (it touches Python objects). The buffers stay
// valid after py::buffer_info is released because the caller keeps the LMDB transaction / arrays alive.
// encoded: srcs are encoded frames (decode_binding.cpp); only the crop geometry is checked here.
std::vector<CropTask> make_tasks(const py::sequence& srcs, const py::array_t<int64_t>& plan, torch::Tensor& lq,
                                 torch::Tensor& gt, OutType* out, bool encoded = false) {
  check_out(lq, "lq");
  check_out(gt, "gt");
  *out = out_type_of(lq);
  if (out_type_of(gt) != *out) throw py::value_error("lq and gt must have the same dtype");
  if (plan.ndim() != 2 || plan.shape(1) != kNumCols) {
    throw py::value_error("plan must be an int64 table with " + std::to_string(kNumCols) + " columns");
  }
  const int64_t n = plan.shape(0);
  if (static_cast<int64_t>(py::len(srcs)) != n) throw py::value_error("one source buffer per plan row");
  auto p = plan.unchecked<2>();
  const int64_t esize = out_type_size(*out);
  std::vector<CropTask> tasks(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    torch::Tensor& dst = p(i, kKind) == 0 ? lq : gt;
    const int64_t C = dst.size(-3), oh = dst.size(-2), ow = dst.size(-1);
    const int64_t plane = C * oh * ow;
    CropTask& t = tasks[static_cast<size_t>(i)];
    py::buffer_info info = py::reinterpret_borrow<py::buffer>(srcs[static_cast<size_t>(i)]).request();
    t.src = static_cast<const uint8_t*>(info.ptr);
    t.src_bytes = info.size * info.itemsize;
    for (int col = kH; col <= kCropW; ++col) {  // narrowed to int below: a wrapped value must not pass the checks
      if (p(i, col) < INT32_MIN || p(i, col) > INT32_MAX) {
        throw py::value_error("plan row " + std::to_string(i) + ": value " + std::to_string(p(i, col)) +
                              " in column " + std::to_string(col) + " is out of range");
      }
    }
    t.H = static_cast<int>(p(i, kH)), t.W = static_cast<int>(p(i, kW)), t.C = static_cast<int>(p(i, kC));
    t.top = static_cast<int>(p(i, kTop)), t.left = static_cast<int>(p(i, kLeft));
    t.h = static_cast<int>(p(i, kCropH)), t.w = static_cast<int>(p(i, kCropW));
    const int64_t flags = p(i, kFlags);
    t.hflip = flags & 1, t.vflip = flags & 2, t.transpose = flags & 4;
    const int64_t slot = p(i, kSlot);
    if (slot < 0 || (slot + 1) * plane > dst.numel()) {
      throw py::value_error("plan row " + std::to_string(i) + ": slot outside the batch tensor");
    }
    t.dst = static_cast<char*>(dst.data_ptr()) + slot * plane * esize;
    std::string why;
    if (encoded) {
      why = t.src_bytes > 0 ? check_geometry(t) : "empty encoded frame";
    } else {
      why = check_task(t);
    }
    const int64_t th = t.transpose ? t.w : t.h, tw = t.transpose ? t.h : t.w;
    if (why.empty() && (t.C != C || th != oh || tw != ow)) {
      why = "crop gives " + std::to_string(t.C) + "x" + std::to_string(th) + "x" + std::to_string(tw) +
            " but the batch holds " + std::to_string(C) + "x" + std::to_string(oh) + "x" + std::to_string(ow);
    }
    if (!why.empty()) throw py::value_error("plan row " + std::to_string(i) + ": " + why);
  }
  return tasks;
}

class FrameGather {
 public:
  explicit FrameGather(int num_threads) : pool_(num_threads) {}

  uint64_t submit(const py::sequence& srcs, const py::array_t<int64_t>& plan, torch::Tensor lq, torch::Tensor gt) {
    OutType out;
    std::vector<CropTask> tasks = make_tasks(srcs, plan, lq, gt, &out);
    return pool_.submit(std::move(tasks), out);
  }

  void wait(uint64_t ticket) {
    py::gil_scoped_release release;
    pool_.wait(ticket);
  }

  bool done(uint64_t ticket) { return pool_.done(ticket); }

  // Runs a plan in the calling thread (the PNG/JPEG path calls this from its decode threads).
  void run(const py::sequence& srcs, const py::array_t<int64_t>& plan, torch::Tensor lq, torch::Tensor gt) {
    OutType out;
    std::vector<CropTask> tasks = make_tasks(srcs, plan, lq, gt, &out);
    py::gil_scoped_release release;
    for (const CropTask& t : tasks) run_task(t, out);
  }

  int num_threads() const { return pool_.num_threads(); }

 private:
  GatherPool pool_;
};

}  // namespace

std::vector<CropTask> make_plan_tasks(const py::sequence& srcs, const py::array_t<int64_t>& plan, torch::Tensor& lq,
                                      torch::Tensor& gt, OutType* out, bool encoded) {
  return make_tasks(srcs, plan, lq, gt, out, encoded);
}

void bind_decoder(py::module_& m);  // csrc/loader/decode_binding.cpp

void bind_loader(py::module_& m) {
  bind_decoder(m);
  py::class_<FrameGather>(m, "FrameGather",
                          "Persistent C++ threads that copy crops of uint8 HWC frames into batch tensors")
      .def(py::init<int>(), py::arg("num_threads"))
      .def("submit", &FrameGather::submit, py::arg("srcs"), py::arg("plan"), py::arg("lq"), py::arg("gt"),
           "Queue a batch plan; returns a ticket at once (keep srcs and the tensors alive until wait)")
      .def("wait", &FrameGather::wait, py::arg("ticket"), "Block (GIL released) until the batch is written")
      .def("done", &FrameGather::done, py::arg("ticket"))
      .def("run", &FrameGather::run, py::arg("srcs"), py::arg("plan"), py::arg("lq"), py::arg("gt"),
           "Run a plan now in this thread with the GIL released")
      .def_property_readonly("num_threads", &FrameGather::num_threads)
      .def_property_readonly_static("plan_columns", [](py::object) { return static_cast<int>(kNumCols); });
}

}  // namespace loader
}  // namespace edvr_fast

// The decode-and-crop task: decoder function pointer + run_task (DecodePool runs it in its threads). No
// Torch, no codec library here (CMake's host tests build it with a fake decoder).
#include "loader/decode_core.h"

namespace edvr_fast {
namespace loader {

std::string check_decode_task(const DecodeTask& task) {
  if (task.decode == nullptr) return "no decoder";
  if (task.crop.src_bytes <= 0) return "empty encoded frame";
  return check_geometry(task.crop);  // the decoded frame will have H*W*C bytes; check the rest now
}

std::string run_decode_task(const DecodeTask& task, OutType out, DecodedRegion* r) {
  const CropTask& t = task.crop;
  std::string why = task.decode(t.src, t.src_bytes, t.H, t.W, t.C, t.top, t.left, t.h, t.w, r);
  if (!why.empty()) return why;
  if (r->top > t.top || r->left > t.left || r->top + r->rows < t.top + t.h || r->left + r->cols < t.left + t.w ||
      r->pixels.size() < static_cast<size_t>(r->rows) * r->cols * t.C) {
    return "decoder returned a region that does not cover the crop";  // a decoder bug, not bad data
  }
  CropTask sub = t;
  sub.src = r->pixels.data();
  sub.H = r->rows, sub.W = r->cols;
  sub.src_bytes = static_cast<int64_t>(r->rows) * r->cols * t.C;
  sub.top = t.top - r->top, sub.left = t.left - r->left;
  run_task(sub, out);
  return {};
}

}  // namespace loader
}  // namespace edvr_fast

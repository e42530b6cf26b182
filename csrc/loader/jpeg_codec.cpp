// libjpeg-turbo partial decoder: only the iMCU columns and rows a crop needs (see codec.h).
// Error handling: libjpeg reports fatal errors (and the warnings we make fatal) through error_exit, which
// longjmps back here; the function holding the setjmp owns no C++ objects, so nothing is skipped by the jump.
#include <setjmp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include "loader/codec.h"

namespace edvr_fast {
namespace loader {
namespace {

struct JpegError {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX + 64];
};

void jpeg_fail(j_common_ptr cinfo) {
  JpegError* e = reinterpret_cast<JpegError*>(cinfo->err);
  char text[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, text);
  std::snprintf(e->msg, sizeof(e->msg), "JPEG decode failed: %s", text);
  longjmp(e->jump, 1);
}

// Warnings (msg_level -1: corrupt or truncated data that libjpeg would patch over) fail the frame, as
// cv2.imdecode returns None for them; trace messages (level >= 0) are ignored.
void jpeg_warn(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) jpeg_fail(cinfo);
}

// Returns true on success; on failure e->msg says why. `buf` is sized to (top+h) x W x C only once the header
// has matched H x W x C (a frame claiming another size is refused before anything is allocated for it).
bool decode_inner(jpeg_decompress_struct* cinfo, JpegError* e, const uint8_t* data, int64_t size, int H, int W,
                  int C, int top, int left, int h, int w, bool context, std::vector<uint8_t>* buf, int* out_rows,
                  int* out_cols, int* out_top, int* out_left) {
  cinfo->err = jpeg_std_error(&e->pub);
  e->pub.error_exit = jpeg_fail;
  e->pub.emit_message = jpeg_warn;
  if (setjmp(e->jump)) {
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(cinfo, TRUE);
  const int comps = cinfo->num_components;
  if (static_cast<int>(cinfo->image_width) != W || static_cast<int>(cinfo->image_height) != H ||
      !((comps == 1 && C == 1) || (comps == 3 && C == 3))) {
    std::snprintf(e->msg, sizeof(e->msg), "JPEG decodes to %dx%dx%d, expected %dx%dx%d", cinfo->image_height,
                  cinfo->image_width, comps, H, W, C);
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  try {
    buf->resize(static_cast<size_t>(top + h) * W * C);  // at most this many rows and columns
  } catch (const std::bad_alloc&) {
    std::snprintf(e->msg, sizeof(e->msg), "out of memory for a %dx%dx%d frame", H, W, C);
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  uint8_t* pixels = buf->data();
  cinfo->out_color_space = C == 3 ? JCS_EXT_BGR : JCS_GRAYSCALE;
  cinfo->dct_method = JDCT_ISLOW;
  cinfo->do_fancy_upsampling = TRUE;
  jpeg_start_decompress(cinfo);
  const int mcu_w = cinfo->max_h_samp_factor * DCTSIZE, mcu_h = cinfo->max_v_samp_factor * DCTSIZE;
  int x0 = left, x1 = left + w, y0 = top;
  if (context) {
    x0 = std::max(0, left - mcu_w);
    x1 = std::min(W, left + w + mcu_w);
    y0 = std::max(0, top - mcu_h);
  }
  JDIMENSION xoff = 0, cols = static_cast<JDIMENSION>(W);
  if (x0 > 0 || x1 < W) {
    xoff = static_cast<JDIMENSION>(x0);
    cols = static_cast<JDIMENSION>(x1 - x0);
    jpeg_crop_scanline(cinfo, &xoff, &cols);  // rounds xoff down to an iMCU boundary, widens cols
  }
  if (y0 > 0 && jpeg_skip_scanlines(cinfo, static_cast<JDIMENSION>(y0)) != static_cast<JDIMENSION>(y0)) {
    std::snprintf(e->msg, sizeof(e->msg), "JPEG ended before row %d", y0);
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  const int end = top + h;
  const size_t stride = static_cast<size_t>(cols) * C;
  JSAMPROW rows[16];
  while (static_cast<int>(cinfo->output_scanline) < end) {
    const int at = static_cast<int>(cinfo->output_scanline);
    const int n = std::min(16, end - at);
    for (int i = 0; i < n; ++i) rows[i] = pixels + static_cast<size_t>(at - y0 + i) * stride;
    if (jpeg_read_scanlines(cinfo, rows, static_cast<JDIMENSION>(n)) == 0) {
      std::snprintf(e->msg, sizeof(e->msg), "JPEG ended at row %d", at);
      jpeg_destroy_decompress(cinfo);
      return false;
    }
  }
  *out_rows = end - y0, *out_cols = static_cast<int>(cols), *out_top = y0, *out_left = static_cast<int>(xoff);
  jpeg_abort_decompress(cinfo);  // the rows below the crop are never decoded
  jpeg_destroy_decompress(cinfo);
  return true;
}

}  // namespace

std::string decode_jpeg_region(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h,
                               int w, DecodedRegion* out, bool context) {
  if (size < 4 || data[0] != 0xFF || data[1] != 0xD8) return "not a JPEG file";
  jpeg_decompress_struct cinfo;
  JpegError err;
  err.msg[0] = '\0';
  if (!decode_inner(&cinfo, &err, data, size, H, W, C, top, left, h, w, context, &out->pixels, &out->rows,
                    &out->cols, &out->top, &out->left)) {
    return err.msg[0] ? std::string(err.msg) : std::string("JPEG decode failed");
  }
  return {};
}

std::string decode_jpeg(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h, int w,
                        DecodedRegion* out) {
  return decode_jpeg_region(data, size, H, W, C, top, left, h, w, out, true);
}

}  // namespace loader
}  // namespace edvr_fast

// PNG partial decoder (see codec.h): banded PNGs (what the pack writes, png_banded.h) decode only the bands
// under the crop; any other PNG goes through libpng, rows 0 .. top+h-1 only. libpng reports errors through
// png_error, which longjmps back to the setjmp in decode_inner; that function owns no C++ objects.
#include <png.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "loader/codec.h"
#include "loader/png_banded.h"

namespace edvr_fast {
namespace loader {
namespace {

struct PngSource {
  const uint8_t* data;
  size_t size, pos;
  char msg[256];
};

void png_read_mem(png_structp png, png_bytep dst, png_size_t n) {
  PngSource* s = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > s->size - s->pos) png_error(png, "PNG data ends early");
  std::memcpy(dst, s->data + s->pos, n);
  s->pos += n;
}

void png_fail(png_structp png, png_const_charp msg) {
  PngSource* s = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(s->msg, sizeof(s->msg), "PNG decode failed: %s", msg);
  png_longjmp(png, 1);
}

void png_quiet(png_structp, png_const_charp) {}

// `buf` is sized to h x W x C only once IHDR has matched H x W x C (no allocation for a frame of another size).
bool decode_inner(PngSource* src, int H, int W, int C, int top, int h, std::vector<uint8_t>* buf) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, src, png_fail, png_quiet);
  if (png == nullptr) {
    std::snprintf(src->msg, sizeof(src->msg), "cannot create a PNG reader");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(src->msg, sizeof(src->msg), "cannot create a PNG reader");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, src, png_read_mem);
  // Frames need no text, ICC or unknown chunks: skip them, and cap any ancillary chunk's allocation, so a
  // hostile iTXt/zTXt cannot make libpng allocate gigabytes (found by fuzz_png: 1.7 GB for one iTXt chunk).
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nullptr, 0);
  static const png_byte kSkipped[] = {'i', 'T', 'X', 't', 0, 'z', 'T', 'X', 't', 0, 't', 'E', 'X', 't', 0,
                                      'i', 'C', 'C', 'P', 0, 's', 'P', 'L', 'T', 0};
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, kSkipped, 5);
  png_set_chunk_malloc_max(png, 1u << 20);
  png_read_info(png, info);
  png_uint_32 width = 0, height = 0;
  int depth = 0, type = 0, interlace = 0;
  png_get_IHDR(png, info, &width, &height, &depth, &type, &interlace, nullptr, nullptr);
  const char* bad = nullptr;
  if (depth != 8) {
    bad = "only 8-bit PNG frames are supported";
  } else if (type == PNG_COLOR_TYPE_PALETTE) {
    bad = "palette PNG frames are not supported";
  } else if (type == PNG_COLOR_TYPE_GRAY_ALPHA) {
    bad = "gray+alpha PNG frames are not supported";
  } else if (interlace != PNG_INTERLACE_NONE) {
    bad = "interlaced PNG frames are not supported";
  }
  const int chans = type == PNG_COLOR_TYPE_GRAY ? 1 : 3;
  if (bad != nullptr) {
    std::snprintf(src->msg, sizeof(src->msg), "%s (bit depth %d, colour type %d)", bad, depth, type);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (static_cast<int>(width) != W || static_cast<int>(height) != H || chans != C) {
    std::snprintf(src->msg, sizeof(src->msg), "PNG decodes to %ux%ux%d, expected %dx%dx%d", height, width, chans,
                  H, W, C);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (type == PNG_COLOR_TYPE_RGB_ALPHA) png_set_strip_alpha(png);
  if (C == 3) png_set_bgr(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(W) * C) {
    std::snprintf(src->msg, sizeof(src->msg), "unexpected PNG row size");
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  const size_t stride = static_cast<size_t>(W) * C;
  try {
    buf->resize(static_cast<size_t>(h) * stride);
  } catch (const std::bad_alloc&) {
    std::snprintf(src->msg, sizeof(src->msg), "out of memory for a %dx%dx%d frame", H, W, C);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  uint8_t* pixels = buf->data();
  for (int y = 0; y < top; ++y) png_read_row(png, pixels, nullptr);  // rows above the crop: into row 0
  for (int y = 0; y < h; ++y) png_read_row(png, pixels + y * stride, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);  // the rows below the crop are never inflated
  return true;
}

}  // namespace

std::string decode_png(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h, int w,
                       DecodedRegion* out) {
  (void)left, (void)w;
  if (size < 8 || png_sig_cmp(data, 0, 8) != 0) return "not a PNG file";
  bool banded = false;
  std::string why = decode_banded_png(data, size, H, W, C, top, h, out, &banded);
  if (banded || !why.empty()) return why;
  PngSource src{data, static_cast<size_t>(size), 0, {0}};
  if (!decode_inner(&src, H, W, C, top, h, &out->pixels)) {
    return src.msg[0] ? std::string(src.msg) : std::string("PNG decode failed");
  }
  out->rows = h, out->cols = W, out->top = top, out->left = 0;
  return {};
}

}  // namespace loader
}  // namespace edvr_fast

// Partial frame decoders (DecodeFn, see decode_core.h). Compiled into _C only when setup.py finds the
// library: jpeg_codec.cpp with EDVR_FAST_WITH_JPEG (libjpeg-turbo), png_codec.cpp and png_banded.cpp with
// EDVR_FAST_WITH_PNG (libpng and zlib).
#pragma once

#include <cstdint>
#include <string>

#include "loader/decode_core.h"

namespace edvr_fast {
namespace loader {

// Bit-exact with OpenCV's cv2.imdecode(IMREAD_UNCHANGED)[crop]: islow IDCT, fancy upsampling, BGR or gray.
// Decodes only the iMCU columns around the crop (jpeg_crop_scanline), skips the rows above it
// (jpeg_skip_scanlines) and stops after its last row. `context` adds one iMCU of margin on every side
// so that chroma upsampling at the crop's edges sees the same neighbours as a whole-frame decode.
std::string decode_jpeg_region(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h,
                               int w, DecodedRegion* out, bool context);
std::string decode_jpeg(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h, int w,
                        DecodedRegion* out);  // decode_jpeg_region with context

// Banded PNG (png_banded.h, what the pack writes): only the bands covering rows top .. top+h-1. Any other
// 8-bit gray / RGB(A) PNG: rows 0 .. top+h-1 with libpng. Whole rows either way (PNG cannot skip columns), BGR
// for colour, alpha dropped (as the store does); 16-bit, palette, gray+alpha and interlaced files are rejected.
std::string decode_png(const uint8_t* data, int64_t size, int H, int W, int C, int top, int left, int h, int w,
                       DecodedRegion* out);

}  // namespace loader
}  // namespace edvr_fast

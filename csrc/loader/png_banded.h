// Banded PNG: a standard 8-bit PNG (any decoder reads it whole) whose rows can also be decoded a band at a time.
//
// The pack writes PNG frames this way so that the fused loader inflates only the rows a crop needs:
//   - the zlib stream is fully flushed (Z_FULL_FLUSH: byte-aligned, no back-reference across the flush) after
//     every `band_rows` rows, and each band's compressed bytes are one IDAT chunk of their own;
//   - the first row of every band is filtered with None or Sub, which do not look at the row above;
//   - a private ancillary chunk "edBD" between IHDR and the first IDAT records band_rows and the band count
//     (layout in FORMAT.md); band b is the b-th IDAT chunk. The lowercase first letter makes other decoders
//     skip it; the uppercase fourth letter (unsafe to copy) tells editors to drop it if they rewrite the image.
// A band is then decoded by raw-inflating its IDAT chunk(s) with an empty window and unfiltering from a zero
// row, which gives exactly the rows a whole-file decode gives. Torch-free and libpng-free (zlib only), so the
// CMake host tests build it; png_codec.cpp uses it for files that carry the index and libpng for the rest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loader/decode_core.h"

namespace edvr_fast {
namespace loader {

constexpr int kPngBandRows = 16;  // what the pack writes: ~16/2 rows of over-read per crop edge, ~1% larger files

// Encodes an H x W x C uint8 frame (HWC, C-contiguous; C == 3 is BGR and is stored as PNG RGB, C == 1 gray) as a
// banded PNG into *out. `level` is the zlib level (0-9). Each row's filter is the one with the smallest sum of
// absolute signed residuals (libpng's heuristic), among None/Sub on a band's first row and all five elsewhere.
// Returns an empty string on success, else what is wrong with the arguments.
std::string encode_banded_png(const uint8_t* pixels, int H, int W, int C, int band_rows, int level,
                              std::vector<uint8_t>* out);

// Decodes the whole bands covering rows top .. top+h-1 of a banded PNG that should be H x W x C into *out (BGR
// or gray, full width, out->top = the first band's first row). *banded is set false, with an empty return and
// nothing decoded, when the file has no band index (any other PNG: decode it some other way). Checks the CRC
// of every chunk it reads; returns why the bytes are not such a frame otherwise (never throws).
std::string decode_banded_png(const uint8_t* data, int64_t size, int H, int W, int C, int top, int h,
                              DecodedRegion* out, bool* banded);

}  // namespace loader
}  // namespace edvr_fast

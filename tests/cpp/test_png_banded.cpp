// Host tests of the banded PNG codec (zlib only, no Torch, no libpng): every crop of every shape decodes to
// the frame's own rows, bands are whole and aligned, a PNG without the band index is left to the caller, and
// damage (flipped bytes, a truncated file, a band that inflates to the wrong length, a mismatched index, a
// band whose first row needs the row above, re-chunked image data) is reported, never decoded into wrong pixels.
// Whole-file validity for other decoders is tested from Python with OpenCV's libpng (tests/loader/test_codec.py).
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "loader/png_banded.h"
#include "expect.h"

using edvr_fast::loader::decode_banded_png;
using edvr_fast::loader::DecodedRegion;
using edvr_fast::loader::encode_banded_png;

// Smooth gradients plus pseudo-random noise: every filter type wins on some rows.
static std::vector<uint8_t> make_frame(int H, int W, int C, uint32_t seed) {
  std::vector<uint8_t> f(static_cast<size_t>(H) * W * C);
  uint32_t s = seed * 2654435761u + 1;
  for (int y = 0; y < H; ++y) {
    for (int x = 0; x < W; ++x) {
      for (int c = 0; c < C; ++c) {
        s = s * 1664525u + 1013904223u;
        const int noise = (y / 7) % 3 == 0 ? static_cast<int>(s >> 28) : static_cast<int>(s >> 24);
        f[(static_cast<size_t>(y) * W + x) * C + c] = static_cast<uint8_t>(x * 3 + y * 2 + c * 50 + noise);
      }
    }
  }
  return f;
}

static uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

static void set_be32(uint8_t* p, uint32_t x) {
  p[0] = uint8_t(x >> 24), p[1] = uint8_t(x >> 16), p[2] = uint8_t(x >> 8), p[3] = uint8_t(x);
}

// Byte offset of the n-th chunk of `type` (0-based), or 0.
static size_t find_chunk(const std::vector<uint8_t>& png, const char* type, int n = 0) {
  for (size_t pos = 8; pos + 12 <= png.size(); pos += 12 + be32(&png[pos])) {
    if (std::memcmp(&png[pos + 4], type, 4) == 0 && n-- == 0) return pos;
  }
  return 0;
}

static void fix_crc(std::vector<uint8_t>* png, size_t pos) {
  const uint32_t len = be32(&(*png)[pos]);
  set_be32(&(*png)[pos + 8 + len], static_cast<uint32_t>(crc32(0L, &(*png)[pos + 4], len + 4)));
}

static bool crop_matches(const std::vector<uint8_t>& frame, int W, int C, int top, int h, int band_rows,
                         const DecodedRegion& r) {
  if (r.left != 0 || r.cols != W || r.top > top || r.top + r.rows < top + h || r.top % band_rows != 0) return false;
  const size_t n = static_cast<size_t>(W) * C;
  return std::memcmp(r.pixels.data(), frame.data() + static_cast<size_t>(r.top) * n, r.rows * n) == 0;
}

static std::string decode(const std::vector<uint8_t>& png, int H, int W, int C, int top, int h, DecodedRegion* r,
                          bool* banded) {
  return decode_banded_png(png.data(), static_cast<int64_t>(png.size()), H, W, C, top, h, r, banded);
}

int main() {
  struct Shape {
    int H, W, C, band_rows;
  };
  const Shape shapes[] = {{37, 29, 3, 16}, {37, 29, 1, 16}, {16, 5, 3, 16}, {15, 40, 3, 16}, {33, 17, 3, 1},
                          {40, 12, 1, 8},  {1, 1, 3, 16},   {64, 64, 3, 64}, {50, 9, 3, 7}};
  int cases = 0;
  for (const Shape& s : shapes) {
    const std::vector<uint8_t> frame = make_frame(s.H, s.W, s.C, static_cast<uint32_t>(s.H * 131 + s.W + s.C));
    for (int level : {0, 1, 3, 9}) {
      std::vector<uint8_t> png;
      EXPECT(encode_banded_png(frame.data(), s.H, s.W, s.C, s.band_rows, level, &png).empty());
      EXPECT(find_chunk(png, "IDAT", (s.H + s.band_rows - 1) / s.band_rows - 1) != 0);  // one IDAT per band
      EXPECT(find_chunk(png, "IDAT", (s.H + s.band_rows - 1) / s.band_rows) == 0);
      for (int top = 0; top < s.H; ++top) {
        for (int h = 1; top + h <= s.H; h += (h < 4 ? 1 : 5)) {
          DecodedRegion r;
          bool banded = false;
          const std::string why = decode(png, s.H, s.W, s.C, top, h, &r, &banded);
          EXPECT(why.empty() && banded);
          if (!why.empty()) std::fprintf(stderr, "  %dx%dx%d top %d h %d: %s\n", s.H, s.W, s.C, top, h, why.c_str());
          EXPECT(crop_matches(frame, s.W, s.C, top, h, s.band_rows, r));
          ++cases;
        }
      }
    }
  }

  // Damage: a 64 x 24 RGB frame in 16-row bands; decode rows 20..27 (band 1) unless said otherwise.
  const int H = 64, W = 24, C = 3;
  const std::vector<uint8_t> frame = make_frame(H, W, C, 7);
  std::vector<uint8_t> good;
  EXPECT(encode_banded_png(frame.data(), H, W, C, 16, 3, &good).empty());
  DecodedRegion r;
  bool banded = false;
  auto fails_with = [&](const std::vector<uint8_t>& png, const char* needle, int top = 20, int h = 8) {
    r = DecodedRegion();
    const std::string why = decode(png, H, W, C, top, h, &r, &banded);
    const bool ok = why.find(needle) != std::string::npos;
    if (!ok) std::fprintf(stderr, "  expected '%s', got '%s'\n", needle, why.c_str());
    return ok;
  };
  const size_t idat1 = find_chunk(good, "IDAT", 1);
  {
    std::vector<uint8_t> png = good;  // flipped byte inside band 1: CRC (band 0 alone is intact and decodes)
    png[idat1 + 8 + 3] ^= 0x40;
    EXPECT(fails_with(png, "CRC"));
    EXPECT(fails_with(png, "", 0, 8));
    EXPECT(crop_matches(frame, W, C, 0, 8, 16, r));
  }
  {
    std::vector<uint8_t> png(good.begin(), good.begin() + static_cast<long>(idat1) + 20);  // truncated in band 1
    EXPECT(fails_with(png, "truncated"));
    EXPECT(fails_with(png, "truncated", 40, 8));  // band 2 is not even there
  }
  {
    std::vector<uint8_t> png = good;  // index claims 8-row bands: the band count no longer matches
    const size_t idx = find_chunk(good, "edBD");
    set_be32(&png[idx + 8 + 4], 8);
    fix_crc(&png, idx);
    EXPECT(fails_with(png, "does not match the image size"));
  }
  {
    // Band 1's IDAT split in two chunks (a rewriting tool that kept edBD): band 1 now inflates short.
    const uint32_t len = be32(&good[idat1]), half = len / 2;
    std::vector<uint8_t> png(good.begin(), good.begin() + static_cast<long>(idat1));
    for (uint32_t part : {half, len - half}) {
      const size_t at = png.size();
      png.resize(at + 12 + part);
      set_be32(&png[at], part);
      std::memcpy(&png[at + 4], "IDAT", 4);
      std::memcpy(&png[at + 8], &good[idat1 + 8 + (part == half ? 0 : half)], part);
      fix_crc(&png, at);
    }
    png.insert(png.end(), good.begin() + static_cast<long>(idat1 + 12 + len), good.end());
    EXPECT(fails_with(png, "does not inflate to its rows"));
  }
  {
    // A band whose first row uses the Up filter (what a plain PNG encoder may write): re-encode band 1 by hand.
    std::vector<uint8_t> raw;
    const size_t n = static_cast<size_t>(W) * C;
    for (int y = 16; y < 32; ++y) {
      raw.push_back(y == 16 ? 2 : 0);
      for (size_t i = 0; i < n; ++i) {
        const size_t p = static_cast<size_t>(y) * n + i;
        raw.push_back(static_cast<uint8_t>(y == 16 ? frame[p] - frame[p - n] : frame[p]));
      }
    }
    std::vector<uint8_t> z(compressBound(static_cast<uLong>(raw.size())) + 16);
    z_stream zs{};
    EXPECT(deflateInit2(&zs, 3, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    zs.next_in = raw.data(), zs.avail_in = static_cast<uInt>(raw.size());
    zs.next_out = z.data(), zs.avail_out = static_cast<uInt>(z.size());
    EXPECT(deflate(&zs, Z_FULL_FLUSH) == Z_OK);
    z.resize(zs.total_out);
    deflateEnd(&zs);
    std::vector<uint8_t> png(good.begin(), good.begin() + static_cast<long>(idat1));
    png.resize(idat1 + 12 + z.size());
    set_be32(&png[idat1], static_cast<uint32_t>(z.size()));
    std::memcpy(&png[idat1 + 4], "IDAT", 4);
    std::memcpy(&png[idat1 + 8], z.data(), z.size());
    fix_crc(&png, idat1);
    EXPECT(fails_with(png, "needs the row above"));
  }
  {
    std::vector<uint8_t> png = good;  // no index (renamed to an unknown chunk): not ours, nothing decoded
    std::memcpy(&png[find_chunk(good, "edBD") + 4], "edBX", 4);
    r = DecodedRegion();
    const std::string why = decode(png, H, W, C, 20, 8, &r, &banded);
    EXPECT(why.empty() && !banded && r.rows == 0);
  }
  {
    r = DecodedRegion();
    const std::string why = decode(good, H, W + 1, C, 20, 8, &r, &banded);  // caller expects another size
    EXPECT(why.find("PNG decodes to 64x24x3, expected 64x25x3") != std::string::npos);
  }
  std::vector<uint8_t> out;
  EXPECT(!encode_banded_png(frame.data(), H, W, 2, 16, 3, &out).empty());
  EXPECT(!encode_banded_png(frame.data(), H, W, C, 0, 3, &out).empty());

  std::printf("%d crop cases, %s\n", cases, failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}

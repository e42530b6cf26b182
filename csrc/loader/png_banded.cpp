// Banded PNG encoder and band decoder (see png_banded.h); zlib for deflate/inflate and CRC-32.
#include "loader/png_banded.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace edvr_fast {
namespace loader {
namespace {

constexpr uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
constexpr char kIndexType[4] = {'e', 'd', 'B', 'D'};
constexpr uint8_t kIndexVersion = 1;
constexpr size_t kIndexSize = 12;  // version, 3 reserved bytes, band_rows, band count (big-endian uint32s)

uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void put_be32(std::vector<uint8_t>* v, uint32_t x) {
  const uint8_t b[4] = {uint8_t(x >> 24), uint8_t(x >> 16), uint8_t(x >> 8), uint8_t(x)};
  v->insert(v->end(), b, b + 4);
}

void put_chunk(std::vector<uint8_t>* v, const char type[4], const uint8_t* data, size_t n) {
  put_be32(v, static_cast<uint32_t>(n));
  const size_t start = v->size();
  v->insert(v->end(), type, type + 4);
  v->insert(v->end(), data, data + n);
  put_be32(v, static_cast<uint32_t>(crc32(0L, v->data() + start, static_cast<uInt>(n + 4))));
}

int paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

// Filters `cur` (n bytes, bpp bytes per pixel) with filter type f against `prev` (zeros for none) into dst.
void filter_row(int f, const uint8_t* cur, const uint8_t* prev, size_t n, int bpp, uint8_t* dst) {
  for (size_t i = 0; i < n; ++i) {
    const int a = i >= static_cast<size_t>(bpp) ? cur[i - bpp] : 0;
    const int b = prev[i];
    const int c = i >= static_cast<size_t>(bpp) ? prev[i - bpp] : 0;
    int pred = 0;
    switch (f) {
      case 1: pred = a; break;
      case 2: pred = b; break;
      case 3: pred = (a + b) >> 1; break;
      case 4: pred = paeth(a, b, c); break;
      default: break;
    }
    dst[i] = static_cast<uint8_t>(cur[i] - pred);
  }
}

uint64_t residual_cost(const uint8_t* r, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; ++i) s += static_cast<uint64_t>(std::abs(static_cast<int>(static_cast<int8_t>(r[i]))));
  return s;
}

// In-place PNG unfilter of one row; prev is the unfiltered row above (null for a band's first row, whose
// filter is None or Sub, the two that do not read it).
template <int BPP>
bool unfilter_row(int f, uint8_t* row, const uint8_t* prev, size_t n) {
  switch (f) {
    case 0:
      return true;
    case 1:
      for (size_t i = BPP; i < n; ++i) row[i] = static_cast<uint8_t>(row[i] + row[i - BPP]);
      return true;
    case 2:
      for (size_t i = 0; i < n; ++i) row[i] = static_cast<uint8_t>(row[i] + prev[i]);
      return true;
    case 3:
      for (size_t i = 0; i < BPP; ++i) row[i] = static_cast<uint8_t>(row[i] + (prev[i] >> 1));
      for (size_t i = BPP; i < n; ++i) row[i] = static_cast<uint8_t>(row[i] + ((row[i - BPP] + prev[i]) >> 1));
      return true;
    case 4:
      for (size_t i = 0; i < BPP; ++i) row[i] = static_cast<uint8_t>(row[i] + prev[i]);
      for (size_t i = BPP; i < n; ++i) {
        row[i] = static_cast<uint8_t>(row[i] + paeth(row[i - BPP], prev[i], prev[i - BPP]));
      }
      return true;
    default:
      return false;
  }
}

// One raw-inflate stream per decoding thread, reset per frame (saves the 40 KB allocation of inflateInit).
struct Inflater {
  z_stream zs{};
  bool ok = false;
  Inflater() { ok = inflateInit2(&zs, -15) == Z_OK; }
  ~Inflater() {
    if (ok) inflateEnd(&zs);
  }
};

struct Chunk {
  uint32_t length = 0;
  const uint8_t* type = nullptr;
  const uint8_t* data = nullptr;
};

// The chunk starting at byte `pos`, bounds- and CRC-checked; empty string on success.
std::string read_chunk(const uint8_t* data, int64_t size, int64_t pos, Chunk* c) {
  if (pos < 8 || pos + 12 > size) return "PNG chunk outside the file (truncated frame?)";
  c->length = load_be32(data + pos);
  if (c->length > static_cast<uint64_t>(size - pos - 12)) return "PNG chunk runs past the end (truncated frame?)";
  c->type = data + pos + 4;
  c->data = data + pos + 8;
  const uint32_t stored = load_be32(c->data + c->length);
  if (static_cast<uint32_t>(crc32(0L, c->type, c->length + 4)) != stored) {
    char msg[96];
    std::snprintf(msg, sizeof(msg), "PNG chunk %.4s fails its CRC check (damaged frame)",
                  reinterpret_cast<const char*>(c->type));
    return msg;
  }
  return {};
}

}  // namespace

std::string encode_banded_png(const uint8_t* pixels, int H, int W, int C, int band_rows, int level,
                              std::vector<uint8_t>* out) {
  if (H < 1 || W < 1 || (C != 1 && C != 3)) return "a frame must be H x W x 1 or H x W x 3 with H, W >= 1";
  if (band_rows < 1 || level < 0 || level > 9) return "band_rows must be >= 1 and level 0-9";
  const size_t n = static_cast<size_t>(W) * C;
  const int64_t bands = (static_cast<int64_t>(H) + band_rows - 1) / band_rows;
  if (n + 1 > (1u << 30) || static_cast<uint64_t>(H) * (n + 1) > (1ull << 31) || bands > (1 << 20)) {
    return "frame too large for a PNG";
  }
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return "zlib deflateInit failed";
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, deflateEnd);
  std::vector<uint8_t> z(deflateBound(&zs, static_cast<uLong>(H) * (n + 1)) + 16 * bands + 64);
  std::vector<uint8_t> prev(n, 0), cur(n), best(n + 1), cand(n);
  std::vector<uint64_t> band_end;  // compressed byte offset where each band ends
  zs.next_out = z.data();
  zs.avail_out = static_cast<uInt>(z.size());
  for (int y = 0; y < H; ++y) {
    const uint8_t* src = pixels + static_cast<size_t>(y) * n;
    if (C == 3) {
      for (size_t i = 0; i < n; i += 3) cur[i] = src[i + 2], cur[i + 1] = src[i + 1], cur[i + 2] = src[i];
    } else {
      std::memcpy(cur.data(), src, n);
    }
    const bool band_start = y % band_rows == 0;
    if (band_start) std::fill(prev.begin(), prev.end(), 0);  // the filters then see what a band decoder sees
    uint64_t best_cost = UINT64_MAX;
    for (int f = 0; f < (band_start ? 2 : 5); ++f) {
      filter_row(f, cur.data(), prev.data(), n, C, cand.data());
      const uint64_t cost = residual_cost(cand.data(), n);
      if (cost < best_cost) {
        best_cost = cost;
        best[0] = static_cast<uint8_t>(f);
        std::copy(cand.begin(), cand.end(), best.begin() + 1);
      }
    }
    const bool last_row = y == H - 1, band_end_row = last_row || (y + 1) % band_rows == 0;
    zs.next_in = best.data();
    zs.avail_in = static_cast<uInt>(n + 1);
    const int flush = last_row ? Z_FINISH : band_end_row ? Z_FULL_FLUSH : Z_NO_FLUSH;
    const int ret = deflate(&zs, flush);
    if ((last_row && ret != Z_STREAM_END) || (!last_row && ret != Z_OK) || zs.avail_in != 0) {
      return "zlib deflate failed";
    }
    if (band_end_row) band_end.push_back(zs.total_out);
    std::swap(prev, cur);
  }
  const uint8_t ihdr[13] = {uint8_t(W >> 24), uint8_t(W >> 16), uint8_t(W >> 8), uint8_t(W),
                            uint8_t(H >> 24), uint8_t(H >> 16), uint8_t(H >> 8), uint8_t(H),
                            8, static_cast<uint8_t>(C == 3 ? 2 : 0), 0, 0, 0};
  std::vector<uint8_t> index = {kIndexVersion, 0, 0, 0};
  put_be32(&index, static_cast<uint32_t>(band_rows));
  put_be32(&index, static_cast<uint32_t>(bands));
  out->clear();
  out->reserve(8 + (12 + 13) + (12 + kIndexSize) + 12 * bands + band_end.back() + 12);
  out->insert(out->end(), kSignature, kSignature + 8);
  put_chunk(out, "IHDR", ihdr, sizeof(ihdr));
  put_chunk(out, kIndexType, index.data(), index.size());
  for (int64_t b = 0; b < bands; ++b) {
    const uint64_t start = b ? band_end[b - 1] : 0;
    put_chunk(out, "IDAT", z.data() + start, band_end[b] - start);
  }
  put_chunk(out, "IEND", nullptr, 0);
  return {};
}

std::string decode_banded_png(const uint8_t* data, int64_t size, int H, int W, int C, int top, int h,
                              DecodedRegion* out, bool* banded) {
  *banded = false;
  if (size < 8 || std::memcmp(data, kSignature, 8) != 0) return "not a PNG file";
  Chunk c;
  std::string why = read_chunk(data, size, 8, &c);
  if (!why.empty()) return why;
  if (std::memcmp(c.type, "IHDR", 4) != 0 || c.length != 13) return "PNG does not start with IHDR";
  const uint8_t* hd = c.data;
  // Find the index among the chunks before the first IDAT; none there: not ours, the caller decodes otherwise.
  int64_t pos = 8 + 12 + 13;
  while (true) {
    if (pos + 8 > size) return {};
    const uint8_t* type = data + pos + 4;
    if (std::memcmp(type, "IDAT", 4) == 0 || std::memcmp(type, "IEND", 4) == 0) return {};
    if (std::memcmp(type, kIndexType, 4) == 0) break;
    pos += 12 + static_cast<int64_t>(load_be32(data + pos));
  }
  *banded = true;
  why = read_chunk(data, size, pos, &c);
  if (!why.empty()) return why;
  const int64_t width = load_be32(hd), height = load_be32(hd + 4);
  const int depth = hd[8], type = hd[9];
  const int chans = type == 0 ? 1 : type == 2 ? 3 : -1;
  if (depth != 8 || chans < 0 || hd[10] != 0 || hd[11] != 0 || hd[12] != 0) {
    return "banded PNG with an unexpected IHDR (not 8-bit gray/RGB, or interlaced)";
  }
  if (width != W || height != H || chans != C) {
    char msg[128];
    std::snprintf(msg, sizeof(msg), "PNG decodes to %lldx%lldx%d, expected %dx%dx%d", static_cast<long long>(height),
                  static_cast<long long>(width), chans, H, W, C);
    return msg;
  }
  if (c.length != kIndexSize || c.data[0] != kIndexVersion) return "PNG band index (edBD) of an unknown version";
  const int64_t band_rows = load_be32(c.data + 4), bands = load_be32(c.data + 8);
  if (band_rows < 1 || bands != (H + band_rows - 1) / band_rows) {
    return "PNG band index (edBD) does not match the image size (damaged frame)";
  }
  const int b0 = static_cast<int>(top / band_rows), b1 = static_cast<int>((top + h - 1) / band_rows);
  const int row0 = static_cast<int>(b0 * band_rows);
  const int rows = static_cast<int>(std::min<int64_t>(H, (b1 + 1) * band_rows)) - row0;
  const size_t n = static_cast<size_t>(W) * C, stride = n + 1;

  thread_local std::vector<uint8_t> filtered;
  thread_local Inflater inflater;
  filtered.resize(static_cast<size_t>(rows) * stride);
  if (!inflater.ok || inflateReset2(&inflater.zs, -15) != Z_OK) return "zlib inflateInit failed";
  z_stream& zs = inflater.zs;
  zs.next_out = filtered.data();
  zs.avail_out = static_cast<uInt>(filtered.size());
  // Band b is the b-th IDAT chunk; IDAT chunks are consecutive (PNG rule). Hop over the headers up to band b0.
  pos += 12 + static_cast<int64_t>(c.length);
  while (pos + 8 <= size && std::memcmp(data + pos + 4, "IDAT", 4) != 0) {
    if (std::memcmp(data + pos + 4, "IEND", 4) == 0) break;
    pos += 12 + static_cast<int64_t>(load_be32(data + pos));
  }
  for (int b = 0; b < b0; ++b) {
    if (pos + 12 > size || std::memcmp(data + pos + 4, "IDAT", 4) != 0) {
      return "banded PNG has fewer IDAT chunks than bands (truncated or damaged frame)";
    }
    pos += 12 + static_cast<int64_t>(load_be32(data + pos));
  }
  for (int b = b0; b <= b1 && zs.avail_out > 0; ++b) {
    why = read_chunk(data, size, pos, &c);
    if (!why.empty()) return why;
    if (std::memcmp(c.type, "IDAT", 4) != 0) {
      return "banded PNG has fewer IDAT chunks than bands (truncated or damaged frame)";
    }
    pos += 12 + static_cast<int64_t>(c.length);
    zs.next_in = const_cast<Bytef*>(c.data);
    zs.avail_in = c.length;
    if (b == 0) {  // the zlib header: deflate, 32K window, no preset dictionary
      if (c.length < 2 || (c.data[0] & 0x0f) != 8 || ((c.data[0] << 8) | c.data[1]) % 31 != 0 || (c.data[1] & 0x20)) {
        return "PNG image data has a bad zlib header (damaged frame)";
      }
      zs.next_in += 2, zs.avail_in -= 2;
    }
    const int ret = inflate(&zs, Z_SYNC_FLUSH);
    if (ret == Z_DATA_ERROR || ret == Z_NEED_DICT || ret == Z_MEM_ERROR) {
      return std::string("PNG image data does not inflate (damaged frame): ") + (zs.msg ? zs.msg : "zlib error");
    }
    // Each band inflates to exactly its rows: a band that yields more or fewer would shift the rows after it.
    const uint64_t want = static_cast<uint64_t>(std::min<int64_t>(rows, (b - b0 + 1) * band_rows)) * stride;
    if (zs.total_out != want || (ret == Z_STREAM_END && b != bands - 1)) {
      return "PNG band does not inflate to its rows (damaged frame)";
    }
  }
  if (zs.avail_out > 0) return "PNG image data ends early (truncated frame?)";

  out->pixels.resize(static_cast<size_t>(rows) * n);
  const uint8_t* prev = nullptr;  // row 0 is a band's first row: None or Sub (checked), which never read it
  for (int r = 0; r < rows; ++r) {
    uint8_t* row = filtered.data() + static_cast<size_t>(r) * stride;
    const int f = row[0];
    if (r == 0 && f > 1) return "banded PNG band starts with a row filter that needs the row above (damaged frame)";
    const bool ok = C == 3 ? unfilter_row<3>(f, row + 1, prev, n) : unfilter_row<1>(f, row + 1, prev, n);
    if (!ok) return "PNG row with an unknown filter type (damaged frame)";
    prev = row + 1;
    uint8_t* dst = out->pixels.data() + static_cast<size_t>(r) * n;
    if (C == 3) {
      const uint8_t* s = row + 1;
      for (size_t i = 0; i < n; i += 3) dst[i] = s[i + 2], dst[i + 1] = s[i + 1], dst[i + 2] = s[i];
    } else {
      std::memcpy(dst, row + 1, n);
    }
  }
  out->rows = rows, out->cols = W, out->top = row0, out->left = 0;
  return {};
}

}  // namespace loader
}  // namespace edvr_fast

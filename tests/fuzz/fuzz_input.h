// Shared by the libFuzzer targets: the first bytes of a fuzz input choose the geometry a reader would get
// from meta.json (frame H x W x C and a crop); the rest are the stored frame's bytes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fuzz {

constexpr size_t kParamBytes = 8;
constexpr int64_t kMaxPixels = 1 << 20;  // meta.json sizes are trusted up to this here (memory per run)

struct Geometry {
  int H = 0, W = 0, C = 0, top = 0, left = 0, h = 0, w = 0;
};

inline uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Params: [0] mode (bit 0: take H, W, C from the PNG IHDR / JPEG SOF when there is one, so the decoder gets
// past its size check; else [1], [2] give H, W), [3] C selector, [4..7] crop position and size as fractions.
// Returns false when the input is too short or the frame would be too large to fuzz quickly.
inline bool read_geometry(const uint8_t* data, size_t size, const uint8_t* frame, size_t frame_size,
                          Geometry* g) {
  if (size < kParamBytes) return false;
  g->H = 1 + data[1], g->W = 1 + data[2], g->C = (data[3] & 1) ? 1 : 3;
  if (data[0] & 1) {
    if (frame_size >= 26 && frame[12] == 'I' && frame[13] == 'H' && frame[14] == 'D' && frame[15] == 'R') {
      g->W = static_cast<int>(be32(frame + 16) & 0x7fffffff), g->H = static_cast<int>(be32(frame + 20) & 0x7fffffff);
      g->C = frame[25] == 0 ? 1 : 3;
    } else {
      for (size_t i = 2; i + 9 < frame_size; ++i) {  // the first SOF0/1/2 marker of a JPEG
        if (frame[i] == 0xFF && (frame[i + 1] == 0xC0 || frame[i + 1] == 0xC1 || frame[i + 1] == 0xC2)) {
          g->H = (frame[i + 5] << 8) | frame[i + 6], g->W = (frame[i + 7] << 8) | frame[i + 8];
          g->C = frame[i + 9] == 1 ? 1 : 3;
          break;
        }
      }
    }
  }
  if (g->H < 1 || g->W < 1 || static_cast<int64_t>(g->H) * g->W > kMaxPixels) return false;
  g->top = data[4] * g->H / 256, g->left = data[5] * g->W / 256;
  g->h = 1 + data[6] * (g->H - g->top - 1) / 255, g->w = 1 + data[7] * (g->W - g->left - 1) / 255;
  return true;
}

}  // namespace fuzz

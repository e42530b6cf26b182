"""The size an encoded PNG / JPEG frame claims in its header, read without decoding anything.

Owns the decompression-bomb check: a stored frame whose header disagrees with meta.json is refused before
a decoder allocates the (possibly enormous) image it claims.
"""

from __future__ import annotations

import struct

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# SOFn markers carry the frame size; C4 (DHT), C8 (JPG extension) and CC (DAC) share the range but do not.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def png_size(buf: bytes | memoryview) -> tuple[int, int, int] | None:
    """(height, width, channels after dropping alpha) from a PNG's IHDR, or None if it has none.
    Channels are 0 for colour types the readers reject (palette, gray+alpha) or a bit depth other than 8."""
    head = bytes(buf[:29])
    if len(head) < 29 or head[:8] != _PNG_SIG or head[12:16] != b"IHDR":
        return None
    width, height, depth, ctype = struct.unpack(">IIBB", head[16:26])
    chans = {0: 1, 2: 3, 6: 3}.get(ctype, 0) if depth == 8 else 0
    return height, width, chans


def jpeg_size(buf: bytes | memoryview) -> tuple[int, int, int] | None:
    """(height, width, components) from a JPEG's first SOF segment, or None if none is found."""
    data = memoryview(buf)
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # standalone markers
            pos += 2
            continue
        if marker == 0xD9 or marker == 0xDA:  # EOI / start of scan before any SOF
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if pos + 10 > n:
                return None
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            return height, width, data[pos + 9]
        pos += 2 + length
    return None


def header_mismatch(buf: bytes | memoryview, storage: str, shape: tuple[int, int, int]) -> str | None:
    """Why an encoded frame's header does not describe an image of `shape` (H, W, C), or None if it does."""
    size = png_size(buf) if storage == "png" else jpeg_size(buf)
    if size is None:
        return f"is not a {storage.upper()} file (no readable header)"
    if size != tuple(shape):
        h, w, c = size
        return f"header claims {h}x{w}x{c}, meta.json says {shape[0]}x{shape[1]}x{shape[2]}"
    return None

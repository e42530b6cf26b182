"""Validation sample sheets a person can judge at a glance: input / output / GT side by side, enlarged
(nearest neighbour, so pixels stay visible) and labelled with each panel's PSNR; written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

MIN_PANEL = 256  # small frames are enlarged by an integer factor until a panel is at least this tall
HEADER = 30  # pixels of the label strip above each panel
GAP = 6  # pixels between panels
BACKGROUND = (32, 32, 32)


def _label(width: int, text: str) -> np.ndarray:
    strip = np.full((HEADER, width, 3), BACKGROUND, np.uint8)
    scale = 0.55
    while scale > 0.3 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 8:
        scale -= 0.05  # narrow panels get a smaller font rather than a cut-off label
    cv2.putText(strip, text, (4, HEADER - 10), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return strip


def sample_sheet(panels: list[np.ndarray], labels: list[str], min_height: int = MIN_PANEL) -> np.ndarray:
    """One BGR uint8 image: the HWC BGR uint8 `panels` (same size) enlarged and labelled, left to right."""
    if len(panels) != len(labels) or not panels:
        raise ValueError("one label per panel, at least one panel")
    h = panels[0].shape[0]
    factor = max(1, -(-min_height // h))  # ceil: never shrink, enlarge small crops by a whole factor
    cols = []
    for img, text in zip(panels, labels):
        big = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) if factor > 1 else img
        cols.append(np.concatenate([_label(big.shape[1], text), big], axis=0))
    gap = np.full((cols[0].shape[0], GAP, 3), BACKGROUND, np.uint8)
    row = [cols[0]]
    for c in cols[1:]:
        row += [gap, c]
    return np.ascontiguousarray(np.concatenate(row, axis=1))


def write_png(path: Path, img: np.ndarray) -> None:
    """Write `img` to `path` under a temporary name, then rename (a killed run leaves no half image)."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"cannot encode {path}")
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)

"""Checking every stored frame of a pack against its meta.json and per-frame CRC-32s (format_version 2).

Owns `verify_pack` (used by `info --verify` and by pack's read-back before its final rename).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import lmdb

from edvr_fast.data.meta import ID_KEY, PackMeta, crc_key, decode_crcs, frame_key, load_meta
from edvr_fast.errors import DatasetError


@dataclass(frozen=True)
class BadFrame:
    """One frame that fails verification: clip name, frame index, kind (lq | gt) and why."""

    clip: str
    frame: int
    kind: str
    why: str

    def __str__(self) -> str:
        return f"clip '{self.clip}' frame {self.frame} ({self.kind}): {self.why}"


@dataclass
class VerifyReport:
    """What verify_pack found; `ok` when every frame is present, of the right size and (v2) checksum."""

    path: Path
    format_version: int
    frames_checked: int = 0
    has_checksums: bool = False
    bad: list[BadFrame] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # pack-level: missing checksum keys, id mismatch

    @property
    def ok(self) -> bool:
        return not self.bad and not self.problems

    def summary(self) -> str:
        lines = []
        if not self.has_checksums:
            lines.append(
                f"format_version {self.format_version}: this pack carries no checksums; only presence and "
                "sizes were checked (re-pack to get per-frame CRC-32s)"
            )
        lines += [f"BAD {b}" for b in self.bad]
        lines += [f"BAD {p}" for p in self.problems]
        state = "OK" if self.ok else f"{len(self.bad)} bad frame(s), {len(self.problems)} pack problem(s)"
        checks = "sizes and CRC-32s" if self.has_checksums else "presence and sizes"
        lines.append(f"verify {self.path}: {self.frames_checked} frames checked ({checks}): {state}")
        return "\n".join(lines)


def verify_env(env: lmdb.Environment, meta: PackMeta, path: Path) -> VerifyReport:
    """Verify every frame of an open LMDB environment against `meta` (no staleness check)."""
    report = VerifyReport(path, meta.format_version, has_checksums=meta.format_version >= 2)
    with env.begin(buffers=True) as txn:
        stored = txn.get(ID_KEY)
        if stored is None or bytes(stored).decode("ascii", "replace") != meta.pack_id:
            report.problems.append("meta.json and data.mdb come from different packs (pack id mismatch)")
            return report
        for ci, clip in enumerate(meta.clips):
            crcs = None
            if report.has_checksums:
                value = txn.get(crc_key(ci))
                crcs = None if value is None else decode_crcs(value, clip.num_frames)
                if crcs is None:
                    report.problems.append(
                        f"clip '{clip.name}': checksum key {crc_key(ci).decode()} is "
                        f"{'missing' if value is None else 'of the wrong length'}"
                    )
            for kind, shape, sums in (
                ("lq", clip.lq_shape, crcs[0] if crcs else None),
                ("gt", clip.gt_shape, crcs[1] if crcs else None),
            ):
                need = shape[0] * shape[1] * shape[2]
                for fi in range(clip.num_frames):
                    report.frames_checked += 1
                    buf = txn.get(frame_key(kind, ci, fi))
                    why = None
                    if buf is None:
                        why = "missing from the LMDB"
                    elif meta.storage == "raw" and len(buf) != need:
                        why = f"has {len(buf)} bytes, expected {shape[0]}x{shape[1]}x{shape[2]} = {need}"
                    elif sums is not None and zlib.crc32(buf) != int(sums[fi]):
                        why = f"CRC-32 {zlib.crc32(buf):08x} does not match the stored {int(sums[fi]):08x}"
                    if why:
                        report.bad.append(BadFrame(clip.name, fi, kind, why))
    return report


def verify_pack(path: str | os.PathLike) -> VerifyReport:
    """Read every frame of the pack at `path` and check it; DatasetError only when it cannot be opened."""
    from edvr_fast.data.store import _open_env, check_not_truncated

    path = Path(path)
    meta = load_meta(path)
    if not (path / "data.mdb").exists():
        raise DatasetError("meta.json has no data.mdb beside it", path, "re-pack the dataset")
    check_not_truncated(path)  # a short data.mdb would SIGBUS on the first missing page
    return verify_env(_open_env(str(path)), meta, path)

"""`python -m edvr_fast.data.info [--verify] DST`: what a pack holds, whether it is intact and up to date.

Owns the human-readable report of meta.json plus the pack-id and staleness checks; --verify reads every frame.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edvr_fast.data.meta import stale_sources
from edvr_fast.errors import EdvrError


def _shape(s: tuple[int, int, int]) -> str:
    return f"{s[1]}x{s[0]}x{s[2]}"


def describe(path: str | Path, max_clips: int | None = 20) -> str:
    """The report `info` prints; opens the pack (checking meta.json and LMDB belong together)."""
    from edvr_fast.data.store import ClipStore

    store = ClipStore(path)
    meta = store.meta
    store.close()
    size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file()) / (1 << 20)
    frames = sum(c.num_frames for c in meta.clips)
    lines = [
        f"pack        {Path(path)}  ({size:.1f} MiB)",
        f"format      version {meta.format_version}, id {meta.pack_id}, created {meta.created}, "
        + ("per-frame CRC-32s" if meta.format_version >= 2 else "no checksums (format_version 1)"),
        f"frames      {meta.dtype} {meta.layout} {meta.channel_order}, storage {meta.storage}, "
        f"keys {meta.key_format}",
        f"clips       {len(meta.clips)} clips, {frames} frames, scale x{meta.scale}",
        f"sources     input {meta.pairing.get('input_root')}  gt {meta.pairing.get('gt_root')} "
        f"({meta.pairing.get('mode')})",
    ]
    stale = stale_sources(meta)
    if stale:
        lines.append(f"status      STALE: {len(stale)} source clip(s) changed since packing, e.g. {stale[0]}")
    else:
        lines.append("status      up to date with its sources")
    shown = meta.clips if max_clips is None else meta.clips[:max_clips]
    width = max(len(c.name) for c in meta.clips)
    lines.append(f"  {'clip':<{width}}  frames  input(WxHxC)  gt(WxHxC)")
    for c in shown:
        lines.append(
            f"  {c.name:<{width}}  {c.num_frames:>6}  {_shape(c.lq_shape):>12}  {_shape(c.gt_shape):>9}"
        )
    if len(shown) < len(meta.clips):
        lines.append(f"  ... {len(meta.clips) - len(shown)} more (use --all)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edvr_fast.data.info", description="Describe a packed dataset."
    )
    parser.add_argument("dst", help="pack folder (holds data.mdb and meta.json)")
    parser.add_argument("--all", action="store_true", help="list every clip")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read every frame and check its size and CRC-32; names each bad frame (exit 1 if any)",
    )
    args = parser.parse_args(argv)
    try:
        print(describe(args.dst, None if args.all else 20))
        if args.verify:
            from edvr_fast.data.verify import verify_pack

            report = verify_pack(args.dst)
            print(report.summary())
            return 0 if report.ok else 1
    except EdvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

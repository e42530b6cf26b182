"""Packing scanned clips into an LMDB + meta.json, atomically (`python -m edvr_fast.data.pack SRC DST`).

Owns parallel frame reading and checking, storage encoding, map growth, DST.partial and the CLI.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import shutil
import sys
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import cv2
import lmdb
import numpy as np
from tqdm import tqdm

from edvr_fast.data.frames import iter_video, read_image
from edvr_fast.data.meta import (
    ID_KEY,
    KINDS,
    STORAGES,
    ClipMeta,
    PackMeta,
    SourceInfo,
    crc_key,
    encode_crcs,
    frame_key,
    save_meta,
)
from edvr_fast.data.scan import ClipSide, ScanResult, scan
from edvr_fast.errors import DatasetError, EdvrError, InputError, is_out_of_space

_BATCH_BYTES = 64 << 20  # commit a write transaction every ~64 MiB
_BATCH_ITEMS = 512


def partial_path(dst: str | os.PathLike) -> Path:
    """Where a pack is built before it is renamed to `dst`."""
    dst = Path(dst)
    return dst.with_name(dst.name + ".partial")


def _is_replaceable(dst: Path) -> bool:
    """--overwrite only ever deletes a previous pack or an empty folder, never a user's other data."""
    if dst.is_dir():
        return (dst / "meta.json").exists() or not any(dst.iterdir())
    return False


_PNG_LEVEL = 3  # zlib level of packed PNG frames (what cv2's IMWRITE_PNG_COMPRESSION would be)


@functools.cache
def _banded_png_encoder():
    """edvr_fast._C.encode_png_banded, or None without the compiled extension (or without its PNG codec)."""
    from edvr_fast._extension import load_extension

    _C, _ = load_extension()  # imports torch first (libc10 & co. for _C)
    return getattr(_C, "encode_png_banded", None) if _C is not None else None


def _encode(img: np.ndarray, storage: str, jpg_quality: int) -> bytes | memoryview:
    if storage == "raw":
        return memoryview(np.ascontiguousarray(img)).cast("B")
    if storage == "png" and (encode := _banded_png_encoder()) is not None:
        # A standard PNG whose 16-row bands the fused loader can inflate on their own (FORMAT.md).
        return encode(np.ascontiguousarray(img), level=_PNG_LEVEL)
    ext, params = (
        (".png", [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL])
        if storage == "png"
        else (
            ".jpg",
            [cv2.IMWRITE_JPEG_QUALITY, jpg_quality],
        )
    )
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode a {img.shape} frame as {ext}")
    return buf.tobytes()


def _check_shape(img: np.ndarray, side: ClipSide, path: Path, index: int) -> None:
    if img.shape != side.shape:
        (h, w, c), (eh, ew, ec) = img.shape, side.shape
        first = side.frames[0] if side.frames else f"frame 0 of {side.path}"
        raise DatasetError(
            f"frame {index} is {w}x{h}x{c} but the clip's first frame ({first}) is {ew}x{eh}x{ec}",
            path,
            "all frames of a clip must have the same size and channels; resize or remove this frame",
        )


Transform = Callable[[np.ndarray], np.ndarray]  # applied to each checked frame before encoding (--degrade)


def _read_frame(
    side: ClipSide, index: int, storage: str, jpg_quality: int, transform: Transform | None = None
) -> tuple[bytes | memoryview, int]:
    path = side.frames[index]
    img = read_image(path)
    _check_shape(img, side, path, index)
    if transform is not None:
        img = transform(img)
    return _encode(img, storage, jpg_quality), img.nbytes


def _frames_of(
    pool: ThreadPoolExecutor,
    clip_idx: int,
    kind: str,
    side: ClipSide,
    storage: str,
    q: int,
    depth: int,
    transform: Transform | None = None,
) -> Iterator[tuple[bytes, bytes | memoryview, int]]:
    """(key, value, raw bytes) in frame order; images are decoded ahead in threads (cv2 drops the GIL)."""
    if side.kind == "video":
        n = 0
        for img in iter_video(side.path):
            if n < side.num_frames:
                _check_shape(img, side, side.path, n)
                if transform is not None:
                    img = transform(img)
                yield frame_key(kind, clip_idx, n), _encode(img, storage, q), img.nbytes
            n += 1
        if n != side.num_frames:
            raise DatasetError(
                f"video decoded to {n} frames now, {side.num_frames} when scanned",
                side.path,
                "re-encode the video",
            )
        return
    pending: deque = deque()
    nxt = 0
    while nxt < side.num_frames or pending:
        while nxt < side.num_frames and len(pending) < depth:
            pending.append((nxt, pool.submit(_read_frame, side, nxt, storage, q, transform)))
            nxt += 1
        i, fut = pending.popleft()
        value, nbytes = fut.result()
        yield frame_key(kind, clip_idx, i), value, nbytes


def _put_batch(env: lmdb.Environment, batch: list[tuple[bytes, bytes | memoryview]]) -> None:
    """Write one batch, doubling the map whenever it is full: the user never picks a map size."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for k, v in batch:
                    txn.put(k, v)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)
        except lmdb.Error as exc:
            # LMDB reports a short write on a full disk as EIO; say what it is when the disk has no room left.
            need = sum(len(v) for _, v in batch)
            if shutil.disk_usage(env.path()).free < need + (1 << 20):
                raise OSError(errno.ENOSPC, f"No space left on device (LMDB: {exc})") from exc
            raise


def _source(side: ClipSide) -> SourceInfo:
    return SourceInfo(
        kind=side.kind,
        path=str(side.path.resolve()),
        ext=side.ext,
        files=[f.name for f in side.frames],
        size_bytes=side.size_bytes,
        mtime_ns=side.mtime_ns,
    )


def _write(
    result: ScanResult,
    folder: Path,
    storage: str,
    jpg_quality: int,
    workers: int,
    map_size: int,
    progress: bool,
    transforms: dict[str, Transform] | None = None,
) -> str:
    pack_id = uuid.uuid4().hex
    total = sum(2 * c.num_frames for c in result.clips)
    env = lmdb.open(str(folder), map_size=map_size, subdir=True, meminit=False, sync=False, map_async=True)
    try:
        with (
            ThreadPoolExecutor(workers) as pool,
            tqdm(total=total, unit="frame", desc="pack", disable=not progress, file=sys.stderr) as bar,
        ):
            batch: list = []
            batch_bytes = 0
            for ci, clip in enumerate(result.clips):
                crcs: dict[str, list[int]] = {kind: [] for kind in KINDS}
                for kind in KINDS:
                    side = clip.lq if kind == "lq" else clip.gt
                    for key, value, nbytes in _frames_of(
                        pool, ci, kind, side, storage, jpg_quality, 4 * workers, (transforms or {}).get(kind)
                    ):
                        crcs[kind].append(zlib.crc32(value))  # FORMAT.md v2: checked by info --verify
                        batch.append((key, value))
                        batch_bytes += nbytes
                        bar.update(1)
                        if batch_bytes >= _BATCH_BYTES or len(batch) >= _BATCH_ITEMS:
                            _put_batch(env, batch)
                            batch, batch_bytes = [], 0
                batch.append((crc_key(ci), encode_crcs(crcs["lq"], crcs["gt"])))
            batch.append((ID_KEY, pack_id.encode("ascii")))
            _put_batch(env, batch)
        env.sync(True)
    finally:
        env.close()
    lock = folder / "lock.mdb"
    if lock.exists():
        lock.unlink()  # readers open lock-free; the lock file only mattered while writing
    return pack_id


def _read_back(folder: Path, meta: PackMeta) -> None:
    """Re-read every frame just written and check it against its size and CRC-32 before the pack is
    declared finished: a frame the disk or the LMDB lost or changed is caught now, not mid-training."""
    from edvr_fast.data.verify import verify_env

    env = lmdb.open(str(folder), subdir=True, readonly=True, lock=False, readahead=False)
    try:
        report = verify_env(env, meta, folder)
    finally:
        env.close()
    if not report.ok:
        first = (report.bad and str(report.bad[0])) or report.problems[0]
        raise DatasetError(
            f"the pack does not read back what was written ({len(report.bad)} bad frame(s), e.g. {first})",
            folder,
            "check the destination disk, then pack again",
        )


def pack(
    input_root: str | os.PathLike,
    dst: str | os.PathLike,
    gt_root: str | os.PathLike | None = None,
    *,
    storage: str = "raw",
    overwrite: bool = False,
    workers: int | None = None,
    jpg_quality: int = 95,
    map_size: int | None = None,
    progress: bool = True,
    degrade: str | None = None,
    scale: int | None = None,
    crop: int | None = None,
) -> PackMeta:
    """Scan clips and write them to `dst` (a folder: data.mdb + meta.json); returns the written meta.

    With only `input_root`, its input/GT subfolders are detected (see scan.PAIR_NAMES). With `degrade`
    ("bicubic" | "bd", see data/degrade.py) and `scale`, `input_root` is a GT-only tree: GT frames are cropped
    at the bottom/right to a multiple of `scale` and the LQ frames derived from them; a clip smaller than
    `crop` (the training crop, GT pixels) is an error naming it. The pack is
    built in `dst.partial` and renamed when complete; a `dst.partial` left by a killed run is deleted
    and the pack starts clean. `map_size` is only the starting LMDB map size, grown as needed.
    """
    if storage not in STORAGES:
        raise InputError(f"storage must be one of {STORAGES}, got {storage!r}")
    dst = Path(dst)
    if dst.exists() and overwrite and not _is_replaceable(dst):
        raise DatasetError(
            "destination exists and is not a pack (no meta.json); refusing to delete it",
            dst,
            "choose another DST, or remove it yourself",
        )
    if dst.exists() and not overwrite:
        raise DatasetError(
            "destination already exists", dst, "pass --overwrite to replace it, or choose another DST"
        )
    if degrade is not None:
        if gt_root is not None or scale is None:
            raise InputError("degrade needs a GT-only tree and a scale, and no separate GT root")
        from edvr_fast.data.degrade import degraded_shapes, frame_transforms, scan_gt_only

        result, transforms = scan_gt_only(input_root, degrade, int(scale), crop), frame_transforms(degrade, scale)
    else:
        result, transforms = scan(input_root, gt_root), None
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    if map_size is None:
        raw = sum(c.num_frames * (int(np.prod(c.lq_shape)) + int(np.prod(c.gt_shape))) for c in result.clips)
        map_size = int(raw * 1.1) + (16 << 20)
    partial = partial_path(dst)
    if partial.exists():
        shutil.rmtree(partial)  # left by a killed pack: we restart from scratch rather than resume
    partial.mkdir(parents=True)
    try:
        pack_id = _write(result, partial, storage, jpg_quality, workers, map_size, progress, transforms)
        channels = result.clips[0].lq_shape[2]
        meta = PackMeta(
            pack_id=pack_id,
            storage=storage,
            scale=result.scale,
            clips=[
                ClipMeta(
                    c.name,
                    c.num_frames,
                    *((c.lq_shape, c.gt_shape) if degrade is None else degraded_shapes(c.gt_shape, result.scale)),
                    "uint8",
                    storage,
                    _source(c.lq),
                    _source(c.gt),
                )
                for c in result.clips
            ],
            pairing={
                "mode": "degraded" if degrade else "roots" if gt_root is not None else "subfolders",
                "input_root": str(result.input_root.resolve()),
                "gt_root": str(result.gt_root.resolve()),
            },
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            skipped=dict(result.skipped),
            channel_order="BGR" if channels == 3 else "gray",
        )
        if degrade is not None:
            from edvr_fast.data.degrade import record

            meta.degradation = record(degrade, result.scale)
        _read_back(partial, meta)
        save_meta(meta, partial)  # written last: a folder without meta.json is never a finished pack
        if dst.exists():
            old = dst.with_name(dst.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.rename(dst, old)
            os.rename(partial, dst)
            shutil.rmtree(old)
        else:
            os.rename(partial, dst)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if is_out_of_space(exc):
            kept = "the previous pack there is untouched" if dst.exists() else "nothing was left behind"
            raise DatasetError(
                f"the disk is full: the pack did not fit ({partial.name} removed; {kept})",
                dst,
                "free disk space or choose a DST on a larger disk, then pack again",
            ) from exc
        raise
    return meta


def _size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir()) / (1 << 20)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edvr_fast.data.pack",
        description="Pack video clips (folders of frames or video files) into an LMDB + meta.json.",
        epilog="The pack is built in DST.partial and renamed when complete. A DST.partial left by a killed "
        "run is deleted and the pack starts over (no resume).",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="[SRC] DST",
        help="SRC holds input/GT subfolders (input/+gt/, blur/+sharp/, ...)",
    )
    parser.add_argument("--input", help="input (LQ) root, with --gt, instead of SRC")
    parser.add_argument("--gt", help="GT root, with --input")
    parser.add_argument(
        "--storage", choices=STORAGES, default="raw", help="raw (default, fastest) or png/jpg"
    )
    parser.add_argument("--jpg-quality", type=int, default=95)
    parser.add_argument(
        "--workers", type=int, default=None, help="reader threads (default: cores + 2, max 8)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.add_argument("--degrade", choices=("bicubic", "bd"),
                        help="SRC is a GT-only tree: derive the LQ frames (MATLAB bicubic imresize, or DUF's BD)")
    parser.add_argument("--scale", type=int, choices=(2, 4), help="with --degrade: GT size / LQ size")
    parser.add_argument("--crop", type=int, help="with --degrade: the training crop (GT pixels); smaller clips "
                        "are an error")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.degrade and (args.input or args.gt or args.scale is None):
        parser.error("--degrade takes SRC DST (a GT-only tree) and --scale 2|4")
    if (args.scale or args.crop) and not args.degrade:
        parser.error("--scale and --crop go with --degrade")
    if args.input or args.gt:
        if not (args.input and args.gt) or len(args.paths) != 1:
            parser.error("use --input IN --gt GT DST, or SRC DST")
        src, gt, dst = args.input, args.gt, args.paths[0]
    else:
        if len(args.paths) != 2:
            parser.error("expected SRC DST (or --input IN --gt GT DST)")
        src, gt, dst = args.paths[0], None, args.paths[1]
    t0 = time.monotonic()
    try:
        meta = pack(
            src,
            dst,
            gt,
            storage=args.storage,
            overwrite=args.overwrite,
            workers=args.workers,
            jpg_quality=args.jpg_quality,
            progress=not args.no_progress,
            degrade=args.degrade,
            scale=args.scale,
            crop=args.crop,
        )
    except EdvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    frames = sum(c.num_frames for c in meta.clips)
    skipped = meta.skipped
    print(
        f"packed {len(meta.clips)} clips, {frames} frame pairs, scale x{meta.scale}, storage {meta.storage} "
        f"into {dst} ({_size_mib(Path(dst)):.1f} MiB) in {time.monotonic() - t0:.1f}s; "
        f"skipped {skipped.get('hidden', 0)} hidden, {skipped.get('non_image', 0)} non-image files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

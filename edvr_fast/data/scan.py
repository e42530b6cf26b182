"""Finding clips on disk: folders of frames or video files, paired input/GT, with per-clip facts.

Owns layout detection (one root with input/gt-style subfolders, or two roots), pairing and scale checks.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edvr_fast.data.frames import IMAGE_EXTS, VIDEO_EXTS, is_hidden, natural_key, probe_video, read_image
from edvr_fast.errors import DatasetError

# Subfolder pairs recognised under a single root, as (input, gt); matched case-insensitively.
PAIR_NAMES: tuple[tuple[str, str], ...] = (
    ("input", "gt"),
    ("lq", "gt"),
    ("lq", "hq"),
    ("lr", "hr"),
    ("blur", "sharp"),
    ("blurry", "sharp"),
    ("input", "target"),
    ("degraded", "clean"),
    ("low", "high"),
)


@dataclass(frozen=True)
class ClipSide:
    """One side (input or GT) of a clip: a folder of frames or one video file."""

    kind: str  # "frames" | "video"
    path: Path  # the folder, or the video file
    frames: tuple[Path, ...]  # naturally sorted frame files; empty for a video
    num_frames: int
    shape: tuple[int, int, int]  # (H, W, C) of the first frame; C=3 BGR or C=1 gray
    ext: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class ClipSource:
    """A clip found by the scan; `gt` is None when scanning without GT (inference)."""

    name: str
    lq: ClipSide
    gt: ClipSide | None = None

    @property
    def num_frames(self) -> int:
        return self.lq.num_frames

    @property
    def lq_shape(self) -> tuple[int, int, int]:
        return self.lq.shape

    @property
    def gt_shape(self) -> tuple[int, int, int] | None:
        return self.gt.shape if self.gt is not None else None

    @property
    def ext(self) -> str:
        return self.lq.ext

    @property
    def lq_frames(self) -> tuple[Path, ...]:
        return self.lq.frames

    @property
    def gt_frames(self) -> tuple[Path, ...]:
        return self.gt.frames if self.gt is not None else ()


@dataclass
class ScanResult:
    """What a scan found: clips sorted by name, the GT/input scale, and what was skipped."""

    clips: list[ClipSource]
    scale: int
    input_root: Path
    gt_root: Path | None
    skipped: dict[str, int] = field(default_factory=lambda: {"hidden": 0, "non_image": 0})

    def summary(self) -> str:
        frames = sum(c.num_frames for c in self.clips)
        sizes = sorted({f"{c.lq_shape[1]}x{c.lq_shape[0]}" for c in self.clips})
        size_txt = ", ".join(sizes[:4]) + (", ..." if len(sizes) > 4 else "")
        return (
            f"{len(self.clips)} clips, {frames} frames, input sizes {size_txt}, scale x{self.scale}; "
            f"skipped {self.skipped['hidden']} hidden and {self.skipped['non_image']} non-image files"
        )


@dataclass
class _Found:
    kind: str
    path: Path
    frames: list[Path]


def _find(root: Path, skipped: dict[str, int]) -> dict[str, _Found]:
    """Every clip under `root`: each folder holding images, each video file; names are relative paths."""
    found: dict[str, _Found] = {}
    # Symlinked folders are followed (datasets are often assembled from links), each real folder once: a
    # link back up the tree (a loop) or a second link to a folder already seen is skipped and counted.
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            skipped["linked_twice"] = skipped.get("linked_twice", 0) + 1
            continue
        seen.add((st.st_dev, st.st_ino))
        hidden_dirs = [d for d in dirnames if is_hidden(d)]
        skipped["hidden"] += len(hidden_dirs)
        dirnames[:] = sorted((d for d in dirnames if not is_hidden(d)), key=natural_key)
        rel = Path(dirpath).relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        images = []
        for fn in filenames:
            ext = Path(fn).suffix.lower()
            if is_hidden(fn):
                skipped["hidden"] += 1
            elif ext in IMAGE_EXTS:
                images.append(Path(dirpath, fn))
            elif ext in VIDEO_EXTS:
                name = f"{rel}/{Path(fn).stem}" if rel else Path(fn).stem
                if name in found:
                    raise DatasetError(
                        f"two clips named '{name}': {found[name].path} and this video",
                        Path(dirpath, fn),
                        "rename one of them",
                    )
                found[name] = _Found("video", Path(dirpath, fn), [])
            else:
                skipped["non_image"] += 1
        if images:
            if rel in found:
                raise DatasetError(
                    f"two clips named '{rel}': this folder of frames and {found[rel].path}",
                    dirpath,
                    "rename one of them",
                )
            images.sort(key=lambda q: natural_key(q.name))
            found[rel] = _Found("frames", Path(dirpath), images)
    return found


def _probe(found: _Found) -> ClipSide:
    if found.kind == "video":
        count, shape = probe_video(found.path)
        st = found.path.stat()
        return ClipSide(
            "video", found.path, (), count, shape, found.path.suffix.lower(), st.st_size, st.st_mtime_ns
        )
    shape = read_image(found.frames[0]).shape
    stats = [f.stat() for f in found.frames]
    exts = {f.suffix.lower() for f in found.frames}
    return ClipSide(
        "frames",
        found.path,
        tuple(found.frames),
        len(found.frames),
        (int(shape[0]), int(shape[1]), int(shape[2])),
        exts.pop() if len(exts) == 1 else "mixed",
        sum(s.st_size for s in stats),
        max(s.st_mtime_ns for s in stats),
    )


def _probe_all(found: list[_Found]) -> list[ClipSide]:
    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(_probe, found))


def _check_root(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{what} root does not exist", root, "check the path")
    if not root.is_dir():
        raise DatasetError(f"{what} root is not a folder", root, "pass the folder that holds the clips")
    return root


def find_pair(root: str | os.PathLike) -> tuple[Path, Path]:
    """Locate the (input, gt) subfolders of a single root, e.g. input/+gt/, blur/+sharp/, lq/+gt/."""
    root = _check_root(Path(root), "dataset")
    subdirs = {e.name.lower(): Path(e.path) for e in os.scandir(root) if e.is_dir() and not is_hidden(e.name)}
    hits = [(subdirs[a], subdirs[b]) for a, b in PAIR_NAMES if a in subdirs and b in subdirs]
    if not hits:
        looked = ", ".join(f"{a}/+{b}/" for a, b in PAIR_NAMES)
        raise DatasetError(
            f"cannot find an input/GT pair of subfolders (looked for {looked}, any case)",
            root,
            "rename the subfolders, or pass --input and --gt explicitly",
        )
    if len(hits) > 1:
        pairs = "; ".join(f"{a.name}/+{b.name}/" for a, b in hits)
        raise DatasetError(
            f"several input/GT pairs found ({pairs})", root, "pass --input and --gt explicitly"
        )
    return hits[0]


def scan_frames(root: str | os.PathLike) -> ScanResult:
    """Clips under one root without pairing (no GT), e.g. for inference; scale is reported as 1."""
    root = _check_root(Path(root), "input")
    skipped = {"hidden": 0, "non_image": 0}
    found = _find(root, skipped)
    if not found:
        raise DatasetError(
            "no clips found (a clip is a folder of images or a video file)",
            root,
            f"images: {sorted(IMAGE_EXTS)}; videos: {sorted(VIDEO_EXTS)}",
        )
    names = sorted(found, key=natural_key)
    sides = _probe_all([found[n] for n in names])
    clips = [ClipSource(n or root.name, s) for n, s in zip(names, sides, strict=True)]
    return ScanResult(clips, 1, root, None, skipped)


def _scale_of(clip: ClipSource) -> int:
    (h, w, _), (gh, gw, _) = clip.lq_shape, clip.gt_shape
    if gh % h or gw % w or gh // h != gw // w or gh < h:
        raise DatasetError(
            f"GT size {gw}x{gh} is not an integer multiple (>= 1, same for width and height) "
            f"of input size {w}x{h} for clip '{clip.name}'",
            clip.gt.frames[0] if clip.gt.frames else clip.gt.path,
            "GT must be the input size times an integer scale (1 for deblurring, 4 for x4 SR)",
        )
    return gh // h


def _side_path(side: ClipSide) -> Path:
    return side.frames[0] if side.frames else side.path


def scan(input_root: str | os.PathLike, gt_root: str | os.PathLike | None = None) -> ScanResult:
    """Find paired clips; with one root, its input/GT subfolders are detected (see PAIR_NAMES).

    Reads the first frame of every clip (size, channels); every frame is checked again while packing.
    Raises DatasetError naming the offending file for unpaired clips, differing frame counts,
    unreadable first frames, non-integer or inconsistent scale, mixed gray/colour, or an empty root.
    """
    if gt_root is None:
        lq_root, gt_root_p = find_pair(input_root)
    else:
        lq_root, gt_root_p = _check_root(Path(input_root), "input"), _check_root(Path(gt_root), "GT")
    skipped = {"hidden": 0, "non_image": 0}
    lq_found, gt_found = _find(lq_root, skipped), _find(gt_root_p, skipped)
    if not lq_found:
        raise DatasetError(
            "no clips found in the input root (a clip is a folder of images or a video file)",
            lq_root,
            f"images: {sorted(IMAGE_EXTS)}; videos: {sorted(VIDEO_EXTS)}",
        )
    if not gt_found:
        raise DatasetError(
            "no clips found in the GT root", gt_root_p, "put GT clips with the same names as the input"
        )
    for name in sorted(lq_found, key=natural_key):
        if name not in gt_found:
            raise DatasetError(
                f"clip '{name}' has input but no GT (looked for {gt_root_p / name} as a folder or video)",
                lq_found[name].path,
                "add the GT clip or remove the input clip",
            )
    for name in sorted(gt_found, key=natural_key):
        if name not in lq_found:
            raise DatasetError(
                f"clip '{name}' has GT but no input (looked for {lq_root / name} as a folder or video)",
                gt_found[name].path,
                "add the input clip or remove the GT clip",
            )
    names = sorted(lq_found, key=natural_key)
    sides = _probe_all([lq_found[n] for n in names] + [gt_found[n] for n in names])
    clips = []
    for i, name in enumerate(names):
        lq, gt = sides[i], sides[len(names) + i]
        clip = ClipSource(name or lq_root.name, lq, gt)
        if lq.num_frames != gt.num_frames:
            raise DatasetError(
                f"clip '{clip.name}' has {lq.num_frames} input frames but {gt.num_frames} GT frames "
                f"({gt.path})",
                lq.path,
                "input and GT must have the same frames; remove the extra ones",
            )
        clips.append(clip)
    scale, first = None, None
    for clip in clips:
        s = _scale_of(clip)
        if scale is None:
            scale, first = s, clip
        elif s != scale:
            raise DatasetError(
                f"clip '{clip.name}' has scale x{s} but clip '{first.name}' has x{scale}",
                _side_path(clip.gt),
                "all clips must share one GT/input scale",
            )
    ref = clips[0]
    for clip in clips:
        for side in (clip.lq, clip.gt):
            if side.shape[2] != ref.lq.shape[2]:
                kinds = {1: "gray", 3: "colour"}
                raise DatasetError(
                    f"gray and colour mixed: this is {kinds[side.shape[2]]} but "
                    f"{_side_path(ref.lq)} is {kinds[ref.lq.shape[2]]}",
                    _side_path(side),
                    "convert all frames to one kind (colour or gray)",
                )
    return ScanResult(clips, int(scale), lq_root, gt_root_p, skipped)

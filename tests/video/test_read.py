"""Reading videos through PyAV: counts, timestamps, rotation, 10-bit, subtitles beside video, damage."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from videokit import frame_times, make_video, y_psnr

from edvr_fast.data.frames import read_clip_frames
from edvr_fast.data.scan import scan_frames
from edvr_fast.data.video import VideoReader, probe_video, video_info
from edvr_fast.errors import DatasetError


def test_h264_aac_mp4_decodes_every_frame_close_to_the_source(tmp_path):
    src = make_video(tmp_path / "a.mp4", 20, audio=True)
    n, shape = probe_video(tmp_path / "a.mp4")
    assert (n, shape) == (20, (64, 96, 3))
    got = list(read_clip_frames(tmp_path / "a.mp4", expected=n))
    assert len(got) == 20 and all(g.dtype == np.uint8 and g.shape == (64, 96, 3) for g in got)
    assert min(y_psnr(g, s) for g, s in zip(got, src)) > 38  # BGR order and colour matrix right
    assert video_info(tmp_path / "a.mp4").has_side_streams


def test_variable_frame_rate_timestamps_are_reported_per_frame(tmp_path):
    pts = [0, 40, 80, 200, 240, 500, 520, 540]  # ms: gaps and bursts
    make_video(tmp_path / "vfr.mkv", len(pts), pts=pts, time_base=Fraction(1, 1000))
    reader = VideoReader(tmp_path / "vfr.mkv")
    assert len(list(reader)) == len(pts)
    assert [t.pts for t in reader.times] == pts
    assert frame_times(tmp_path / "vfr.mkv") == [p / 1000 for p in pts]


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied_to_the_pixels(tmp_path, rotation):
    src = make_video(tmp_path / "r.mp4", 3, rotation=rotation)
    info = video_info(tmp_path / "r.mp4")
    assert info.rotation == rotation
    got = list(read_clip_frames(tmp_path / "r.mp4"))
    # The display matrix turns the picture counter-clockwise by `rotation` degrees.
    want = np.rot90(src[1], k={90: 1, -90: -1, 180: 2}[rotation])
    assert got[1].shape == want.shape and (info.height, info.width) == want.shape[:2]
    assert y_psnr(got[1], np.ascontiguousarray(want)) > 38


def test_ten_bit_hevc_is_read_as_8_bit_bgr(tmp_path):
    src = make_video(tmp_path / "t.mkv", 4, encoder="libx265", pix_fmt="yuv420p10le",
                     options={"x265-params": "log-level=error"})
    assert video_info(tmp_path / "t.mkv").pix_fmt == "yuv420p10le"
    got = list(read_clip_frames(tmp_path / "t.mkv"))
    assert len(got) == 4 and got[0].dtype == np.uint8
    assert y_psnr(got[2], src[2]) > 38


def test_mkv_with_a_subtitle_track_reads_its_video(tmp_path):
    make_video(tmp_path / "s.mkv", 6, subtitles=True)
    info = video_info(tmp_path / "s.mkv")
    assert info.num_packets == 6 and info.has_side_streams
    assert len(list(read_clip_frames(tmp_path / "s.mkv"))) == 6


def test_scanner_counts_video_frames(tmp_path):
    (tmp_path / "clips").mkdir()
    make_video(tmp_path / "clips" / "one.mkv", 9)
    make_video(tmp_path / "clips" / "two.webm", 7, encoder="libvpx-vp9")
    found = {c.name: c.num_frames for c in scan_frames(tmp_path / "clips").clips}
    assert found == {"one": 9, "two": 7}


def test_truncated_video_errors_naming_the_frame(tmp_path):
    # moov first (faststart), so the header still lists every frame after the cut.
    make_video(tmp_path / "full.mp4", 30, container_options={"movflags": "+faststart"})
    data = (tmp_path / "full.mp4").read_bytes()
    mdat = data.find(b"mdat")  # keep the index and the first 60% of the frames' data
    (tmp_path / "cut.mp4").write_bytes(data[: mdat + (len(data) - mdat) * 3 // 5])
    with pytest.raises(DatasetError, match=r"cut\.mp4: the header lists 30 frames but the data stops at frame 1\d"):
        probe_video(tmp_path / "cut.mp4")
    # Decoding without the count also refuses the short clip, naming the first missing frame.
    with pytest.raises(DatasetError, match=r"cut\.mp4.*frame \d+ is missing"):
        list(read_clip_frames(tmp_path / "cut.mp4"))


def test_damaged_video_and_non_video_errors(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 5000)
    with pytest.raises(DatasetError, match="junk.mp4.*FFmpeg cannot open"):
        probe_video(tmp_path / "junk.mp4")
    make_video(tmp_path / "ok.mkv", 10)
    # A stream that decodes to fewer frames than were counted is an error naming the missing frame.
    with pytest.raises(DatasetError, match=r"ok\.mkv.*decoded to 10 frames but holds 12: frame 10 is missing"):
        list(VideoReader(tmp_path / "ok.mkv", expected=12))


def test_reader_stops_its_thread_when_the_consumer_stops(tmp_path):
    make_video(tmp_path / "long.mkv", 60)
    reader = VideoReader(tmp_path / "long.mkv")
    it = iter(reader)
    next(it)
    it.close()  # the generator's finally stops the decode thread
    assert reader._thread is not None and not reader._thread.is_alive()

"""Writing videos through PyAV: timestamps, audio/subtitle remux, codecs, quality, colour tags, atomicity."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from videokit import duration, frame_times, make_video, packets, smooth_frame, y_psnr

from edvr_fast.data.frames import read_clip_frames
from edvr_fast.data.video import VideoReader, video_info
from edvr_fast.errors import InputError
from edvr_fast.inference import video_out
from edvr_fast.inference.video_out import EncodeOptions, VideoWriter


def transcode(src: Path, dst: Path, frames=None, **opts) -> VideoWriter:
    """What infer does around the model: decode `src`, write `frames` (default: the decoded ones) to `dst`."""
    info = video_info(src)
    reader = VideoReader(src, info.num_packets)
    writer = VideoWriter(dst, EncodeOptions(**opts), fps=None, info=info, times=reader.times)
    for i, img in enumerate(reader):
        writer.write(img if frames is None else frames[i])
    writer.close()
    return writer


def test_vfr_h264_aac_round_trip_keeps_timestamps_duration_and_audio_bytes(tmp_path):
    pts = [0, 40, 80, 200, 240, 500, 520, 540, 700, 740]
    make_video(tmp_path / "in.mkv", len(pts), pts=pts, time_base=Fraction(1, 1000), audio=True)
    w = transcode(tmp_path / "in.mkv", tmp_path / "out.mp4")
    assert w.encode_seconds > 0 and w.frames == len(pts)
    assert frame_times(tmp_path / "out.mp4") == pytest.approx(frame_times(tmp_path / "in.mkv"), abs=1e-6)
    assert abs(duration(tmp_path / "out.mp4") - duration(tmp_path / "in.mkv")) <= 0.04  # within one frame
    a_in, a_out = packets(tmp_path / "in.mkv", "audio"), packets(tmp_path / "out.mp4", "audio")
    assert len(a_in) > 10 and [p for _, p in a_out] == [p for _, p in a_in]  # remuxed, not re-encoded
    assert [t for t, _ in a_out] == pytest.approx([t for t, _ in a_in], abs=1000)  # same times (1 ms)
    assert not list(tmp_path.glob(".*partial*"))


def test_no_audio_drops_the_side_streams(tmp_path):
    make_video(tmp_path / "in.mp4", 6, audio=True)
    transcode(tmp_path / "in.mp4", tmp_path / "out.mp4", audio=False)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [s.type for s in c.streams] == ["video"]


def test_subtitle_track_is_copied_unchanged(tmp_path):
    make_video(tmp_path / "in.mkv", 8, subtitles=True)
    transcode(tmp_path / "in.mkv", tmp_path / "out.mkv")
    assert packets(tmp_path / "out.mkv", "subtitles") == packets(tmp_path / "in.mkv", "subtitles")
    assert [p for _, p in packets(tmp_path / "out.mkv", "subtitles")] == [b"first line", b"second line"]


def test_h264_default_crf_is_visually_lossless_on_smooth_content(tmp_path):
    make_video(tmp_path / "in.mp4", 12, 96, 128)
    written = [smooth_frame(i + 3, 96, 128) for i in range(12)]  # "restored" frames, differ from the input's
    w = transcode(tmp_path / "in.mp4", tmp_path / "out.mp4", frames=written)
    assert (w.encoder, w.crf, w.pix_fmt) == ("libx264", 16, "yuv420p")
    got = list(read_clip_frames(tmp_path / "out.mp4"))
    assert len(got) == 12
    assert min(y_psnr(g, x) for g, x in zip(got, written)) >= 40.0
    # No colour shift: swscale's default RGB<->YUV rounding alone is about -2 levels over a round trip.
    assert abs(np.mean([g.astype(float) - x for g, x in zip(got, written)])) < 0.3


def test_ffv1_decodes_to_exactly_the_frames_written(tmp_path):
    make_video(tmp_path / "in.mp4", 5)
    rng = np.random.default_rng(0)
    written = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(5)]  # any bits survive
    w = transcode(tmp_path / "in.mp4", tmp_path / "out.mkv", frames=written, codec="ffv1")
    assert w.pix_fmt in ("gbrp", "bgr0")
    got = list(read_clip_frames(tmp_path / "out.mkv"))
    assert len(got) == 5 and all(np.array_equal(g, x) for g, x in zip(got, written))


@pytest.mark.parametrize("codec,suffix,pix_fmt", [("h265", ".mp4", None), ("av1", ".mkv", None),
                                                  ("vp9", ".webm", "yuv444p"), ("h264", ".avi", "yuv444p")])
def test_other_codecs_and_containers_round_trip(tmp_path, codec, suffix, pix_fmt):
    make_video(tmp_path / "in.mkv", 6)
    written = [smooth_frame(i, 64, 96) for i in range(6)]
    dst = tmp_path / f"out{suffix}"
    transcode(tmp_path / "in.mkv", dst, frames=written, codec=codec, pix_fmt=pix_fmt,
              preset="ultrafast" if codec in ("h264", "h265") else None)
    got = list(read_clip_frames(dst))
    assert len(got) == 6 and min(y_psnr(g, x) for g, x in zip(got, written)) > 36
    if suffix != ".avi":  # AVI stores a constant rate, not per-frame timestamps
        assert frame_times(dst) == pytest.approx(frame_times(tmp_path / "in.mkv"), abs=1e-3)


def test_colour_tags_of_the_source_are_carried_over(tmp_path):
    make_video(tmp_path / "in.mp4", 4, colorspace=1)  # BT.709 primaries, transfer and matrix
    src = list(read_clip_frames(tmp_path / "in.mp4"))
    transcode(tmp_path / "in.mp4", tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as c:
        f = next(c.decode(video=0))
        assert (f.colorspace, f.color_primaries, f.color_trc, f.color_range) == (1, 1, 1, 1)
    got = list(read_clip_frames(tmp_path / "out.mp4"))  # same matrix both ways: colours unchanged
    assert abs((got[0].astype(float) - src[0]).mean()) < 0.3 and np.abs(got[0].astype(int) - src[0]).mean() < 1.5


def test_missing_encoder_names_it_and_the_alternatives(tmp_path, monkeypatch):
    have = video_out.available_encoders() - {"libx265"}
    monkeypatch.setattr(video_out, "available_encoders", lambda: have)
    with pytest.raises(InputError, match=r"no h265 encoder \(libx265\).*--codec .*h264"):
        VideoWriter(tmp_path / "o.mp4", EncodeOptions(codec="h265"), fps=25)
    assert not list(tmp_path.iterdir())


def test_container_and_option_errors_are_clear(tmp_path):
    make_video(tmp_path / "in.mp4", 4, audio=True)
    info = video_info(tmp_path / "in.mp4")
    with pytest.raises(InputError, match=r"webm file cannot hold the input's audio .*aac.*--no-audio"):
        VideoWriter(tmp_path / "o.webm", EncodeOptions(), fps=None, info=info)
    with pytest.raises(InputError, match=r"\.webm file cannot hold h264"):
        VideoWriter(tmp_path / "o.webm", EncodeOptions(codec="h264", audio=False), fps=None, info=info)
    with pytest.raises(InputError, match="--encoder-preset 'turbo' is not a h264 preset"):
        VideoWriter(tmp_path / "o.mp4", EncodeOptions(preset="turbo"), fps=25)
    with pytest.raises(InputError, match="--crf does not apply to ffv1"):
        VideoWriter(tmp_path / "o.mkv", EncodeOptions(codec="ffv1", crf=10), fps=25)
    w = VideoWriter(tmp_path / "odd.mp4", EncodeOptions(), fps=25)
    with pytest.raises(InputError, match=r"even width and height.*--pix-fmt yuv444p"):
        w.write(np.zeros((63, 64, 3), np.uint8))
        w.close()
    assert not [p for p in tmp_path.iterdir() if p.name != "in.mp4"]  # nothing left behind


def test_aborted_write_leaves_no_file(tmp_path):
    w = VideoWriter(tmp_path / "out.mp4", EncodeOptions(), fps=25)
    for i in range(10):
        w.write(smooth_frame(i))
    w.abort()
    assert list(tmp_path.iterdir()) == []
    w = VideoWriter(tmp_path / "out.mp4", EncodeOptions(), fps=10)
    for i in range(10):
        w.write(smooth_frame(i))
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert frame_times(tmp_path / "out.mp4") == pytest.approx([i / 10 for i in range(10)])

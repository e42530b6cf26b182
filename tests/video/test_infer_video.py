"""`infer` on video files: codecs, audio kept, timestamps kept, Ctrl-C and errors leave no file, memory."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from videokit import duration, frame_times, make_video, packets, tiny_checkpoint, y_psnr

from edvr_fast import infer
from edvr_fast.data.frames import read_clip_frames, read_image
from edvr_fast.inference import io as infer_io
from edvr_fast.inference.io import IoTimes


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pth")


def _infer(*args) -> int:
    return infer.main([str(a) for a in args] + ["--no-progress"])


def test_h264_aac_video_keeps_audio_timestamps_and_quality(ckpt, tmp_path, capsys):
    pts = [0, 40, 80, 120, 250, 290, 330, 370, 500, 540]  # variable frame rate
    make_video(tmp_path / "in.mp4", len(pts), pts=pts, time_base=Fraction(1, 1000), audio=True)
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "in.mp4", "--output", tmp_path / "out.mp4") == 0
    assert "restored 10 frames" in capsys.readouterr().out
    assert frame_times(tmp_path / "out.mp4") == pytest.approx([p / 1000 for p in pts], abs=1e-6)
    assert abs(duration(tmp_path / "out.mp4") - duration(tmp_path / "in.mp4")) <= 0.04
    assert [p for _, p in packets(tmp_path / "out.mp4", "audio")] == [p for _, p in packets(tmp_path / "in.mp4",
                                                                                          "audio")]
    # The video holds what the model produced: the PNG output of the same run, within codec error.
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "in.mp4", "--output", tmp_path / "png") == 0
    pngs = [read_image(tmp_path / "png" / f"{i:06d}.png") for i in range(10)]
    vid = list(read_clip_frames(tmp_path / "out.mp4"))
    assert min(y_psnr(v, p) for v, p in zip(vid, pngs)) >= 40.0
    assert not list(tmp_path.glob(".*partial*"))


def test_codec_flags_no_audio_and_fps(ckpt, tmp_path, capsys):
    make_video(tmp_path / "in.mp4", 6, audio=True)
    out = tmp_path / "out.mkv"
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "in.mp4", "--output", out, "--codec", "ffv1",
                  "--no-audio") == 0
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video"] and c.streams.video[0].codec_context.name == "ffv1"
    # --fps re-times a video input, which would desync its audio: refused unless the audio is dropped.
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "in.mp4", "--output", tmp_path / "f.mp4",
                  "--fps", "10") == 2
    assert "--no-audio" in capsys.readouterr().err and not (tmp_path / "f.mp4").exists()
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "in.mp4", "--output", tmp_path / "f.mp4",
                  "--fps", "10", "--no-audio", "--crf", "20", "--encoder-preset", "veryfast") == 0
    assert frame_times(tmp_path / "f.mp4") == pytest.approx([i / 10 for i in range(6)])
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "in.mp4", "--output", tmp_path / "x.mp4",
                  "--encoder-preset", "turbo") == 2
    assert "not a h264 preset" in capsys.readouterr().err


def test_tree_of_videos_mirrors_containers(ckpt, tmp_path):
    (tmp_path / "clips").mkdir()
    make_video(tmp_path / "clips" / "a.mkv", 5, subtitles=True)
    make_video(tmp_path / "clips" / "b.mp4", 4)
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "clips", "--output", tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mkv", "b.mp4"]
    assert packets(tmp_path / "out" / "a.mkv", "subtitles") == packets(tmp_path / "clips" / "a.mkv", "subtitles")
    assert len(list(read_clip_frames(tmp_path / "out" / "b.mp4"))) == 4


def test_ctrl_c_and_errors_leave_no_finished_looking_file(ckpt, tmp_path, monkeypatch, capsys):
    make_video(tmp_path / "in.mp4", 14, audio=True)
    real = infer_io.open_sink

    def interrupting_sink(*a, **k):
        sink = real(*a, **k)
        write = sink.write

        def write_then_interrupt(frame):
            write(frame)
            if sink.frames_seen >= 6:
                raise KeyboardInterrupt
            sink.frames_seen += 1

        sink.frames_seen = 0
        sink.write = write_then_interrupt
        return sink

    monkeypatch.setattr(infer, "open_sink", interrupting_sink)
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "in.mp4", "--output", tmp_path / "out.mp4") == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # no out.mp4, no partial file
    monkeypatch.undo()
    # An error half-way (GT shorter than the input) also leaves nothing behind.
    make_video(tmp_path / "gt.mp4", 8)
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "in.mp4", "--output", tmp_path / "out.mp4",
                  "--gt", tmp_path / "gt.mp4") == 2
    assert "fewer than 14 frames" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.mp4", "in.mp4"]


def test_io_times_are_reported(ckpt, tmp_path):
    make_video(tmp_path / "in.mp4", 8)
    args = infer.build_parser().parse_args(["--checkpoint", str(ckpt), "--input", str(tmp_path / "in.mp4"),
                                            "--output", str(tmp_path / "o.mp4"), "--no-progress"])
    times = IoTimes()
    assert infer.run(args, times)[1] == 8
    assert times.decode > 0 and times.encode > 0 and times.decode_wait >= 0 and times.encode_wait >= 0


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
def test_long_video_runs_in_constant_memory(ckpt, tmp_path, monkeypatch):
    """3000 frames at 64x64 through a tiny model: resident memory grows < 50 MB from frame 500 to 3000."""
    n = 3000
    with av.open(str(tmp_path / "long.mp4"), "w") as c:
        v = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        v.width = v.height = 64
        y, x = np.mgrid[0:64, 0:64]
        for i in range(n):
            img = np.stack([(x * 3 + i) % 256, (y * 3 - i) % 256, ((x + y) * 2 + 2 * i) % 256], -1).astype(np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    rss = {}
    real = infer_io.open_sink

    def measuring_sink(*a, **k):
        sink = real(*a, **k)
        write = sink.write

        def write_and_measure(frame):
            write(frame)
            sink.count += 1
            if sink.count in (500, n):
                rss[sink.count] = _rss_mb()

        sink.count = 0
        sink.write = write_and_measure
        return sink

    monkeypatch.setattr(infer, "open_sink", measuring_sink)
    assert _infer("--checkpoint", ckpt, "--input", tmp_path / "long.mp4", "--output", tmp_path / "out.mp4",
                  "--encoder-preset", "ultrafast") == 0
    assert set(rss) == {500, n}
    assert rss[n] - rss[500] < 50, rss
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.video[0].frames == n

"""`evaluate` with videos on either side, and tOF (TecoGAN's temporal consistency) per clip and overall."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from videokit import make_video, smooth_frame

from edvr_fast import evaluate
from edvr_fast.metrics import tof_crop, tof_gray


def test_tof_is_zero_for_identical_motion_and_grows_with_flicker():
    frames = [cv2.cvtColor(smooth_frame(i, 64, 96), cv2.COLOR_BGR2GRAY) for i in range(7)]
    assert tof_gray(frames[0], frames[1], frames[0], frames[1]) == 0.0
    # A prediction that jumps ahead (wrong motion) has a flow unlike the GT's, the more the further it jumps.
    small, large = (tof_gray(frames[0], frames[k], frames[0], frames[1]) for k in (2, 6))
    assert 0.05 < small < large
    # TecoGAN's crop: multiples of 32 with >= 16 px left over; small frames are used whole.
    assert tof_crop(100, 64) == (slice(18, 82), slice(16, 48)) and tof_crop(32, 40) == (slice(0, 32), slice(0, 40))


def test_evaluate_accepts_a_video_on_either_side_and_reports_tof(tmp_path, capsys):
    gt = make_video(tmp_path / "gt.mkv", 6, encoder="ffv1", pix_fmt="bgr0")  # lossless GT video
    (tmp_path / "pred").mkdir()
    for i, f in enumerate(gt):  # prediction: the GT frames, frame 3 replaced by frame 5 (a temporal glitch)
        cv2.imwrite(str(tmp_path / "pred" / f"{i:03d}.png"), gt[5] if i == 3 else f)
    rc = evaluate.main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt.mkv"), "--no-progress",
                        "--json", str(tmp_path / "s.json"), "--csv", str(tmp_path / "s.csv")])
    out = capsys.readouterr().out
    assert rc == 0 and "tOF" in out
    doc = json.loads((tmp_path / "s.json").read_text())
    frames = doc["clips"]["pred"]["frames"]
    assert [f["frame"] for f in frames] == [f"{i:03d}" for i in range(6)]
    assert frames[0]["tof"] is None and frames[1]["tof"] == 0.0 and frames[2]["psnr"] == 100.0
    assert frames[3]["tof"] > 0.05 and frames[4]["tof"] > 0.05 and frames[5]["tof"] == 0.0  # into and out of it
    assert doc["clips"]["pred"]["tof"] == pytest.approx(np.mean([f["tof"] for f in frames[1:]]))
    assert doc["overall"]["tof"] == pytest.approx(doc["clips"]["pred"]["tof"])
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "clip,frame,psnr,ssim,tof" and rows[1].endswith(",")  # no tOF for the first frame
    # The other way round, and video against video.
    assert evaluate.main(["--pred", str(tmp_path / "gt.mkv"), "--gt", str(tmp_path / "pred"), "--no-progress"]) == 0
    assert evaluate.main(["--pred", str(tmp_path / "gt.mkv"), "--gt", str(tmp_path / "gt.mkv"), "--no-progress",
                          "--no-tof"]) == 0
    text = capsys.readouterr().out
    assert "PSNR 100.000 dB" in text.splitlines()[-1] and "tOF" not in text.splitlines()[-1]

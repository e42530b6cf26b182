"""`infer`'s last line: frames/s and the time split between decode, model and encode."""

from __future__ import annotations

import time

from edvr_fast.infer import StageClock, summary


def test_summary_line_reports_frames_per_second_and_the_split():
    line = summary(10, 2, 4.0, "cpu", {"decode": 0.5, "model": 3.0, "encode": 0.4, "score": 0.0}, "out")
    assert line == "restored 10 frames in 2 clips in 4.0s (2.50 frames/s on cpu; decode 0.5s, model 3.0s, " \
                   "encode 0.4s) into out"
    with_score = summary(1, 1, 1.0, "cpu", {"decode": 0.1, "model": 0.2, "encode": 0.3, "score": 0.4}, "o")
    assert with_score.endswith("encode 0.3s, score 0.4s) into o")


def test_clock_charges_the_decoder_not_the_model_for_frames_pulled_inside_it():
    clock = StageClock("cpu")

    def decoder():
        for i in range(3):
            time.sleep(0.05)
            yield i

    def model(frames):
        for f in frames:
            time.sleep(0.02)
            yield f

    assert list(clock.timed("model", model(clock.timed("decode", decoder())), minus="decode")) == [0, 1, 2]
    assert 0.14 <= clock.seconds["decode"] < 0.3
    assert 0.05 <= clock.seconds["model"] < 0.14  # 3 x 20 ms, without the 150 ms of decoding inside it

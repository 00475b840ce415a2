"""Faults the headless pipeline survives: a camera that dies and comes back, a model step that returns NaN or
runs out of memory, a consumer slower than the camera, and SIGINT / SIGTERM at every stage of a run."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest
import torch

import app.cli
from app import live_source, sources
from app.arguments import parse_box
from app.cli import track_source
from app.options import AppOptions
from app.record import Recorder
from app.sources import open_source
from tests.helpers import ROOT
from tests.test_reliability_common import (
    FakeCamera,
    error_lines,
    micro_args,
    one_torch_thread,  # noqa: F401 (an autouse fixture)
    run_cli,
    scene,
    text_rows,
    video_frames,
)
from tracker import Session
from tracker.models.ostrack import OSTrack
from tracker.single import DeviceMemoryError, memory_errors
from tracker.types import Frame, SessionResult, TrackState


@pytest.fixture(scope="module")
def frames8(tmp_path_factory):
    import cv2

    folder = tmp_path_factory.mktemp("frames8")
    for i in range(8):
        cv2.imwrite(str(folder / f"{i:04d}.png"), scene(i))
    return folder


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- a camera that dies and comes back -----------------------------------------------------------------------


def test_camera_outage_is_survived_and_the_gap_shows_in_the_results(tmp_path, micro, monkeypatch, capfd):
    monkeypatch.setattr(live_source, "BACKOFF_FIRST_S", 0.05)
    monkeypatch.setattr(live_source, "BACKOFF_MAX_S", 0.2)
    camera = FakeCamera(period_s=0.02)
    delivered_at: list[float] = []  # monotonic time of each delivered picture; its index is the frame index
    real_factory = camera.factory

    def factory(target):
        capture = real_factory(target)
        read = capture.read

        def timed_read():
            ok, image = read()
            if ok:
                delivered_at.append(time.monotonic())
            return ok, image

        capture.read = timed_read
        return capture

    monkeypatch.setattr(sources, "default_capture", factory)
    outage = {}

    def unplug_for_a_while():
        while len(delivered_at) < 10:
            time.sleep(0.005)
        camera.plugged.clear()
        outage["start"] = time.monotonic()
        time.sleep(0.6)
        outage["end"] = time.monotonic()
        camera.plugged.set()

    cable = threading.Thread(target=unplug_for_a_while, daemon=True)
    cable.start()
    out = tmp_path / "live.jsonl"
    rc = run_cli(*micro_args(micro), "--source", "webcam", "--init-box", "20,40,30,30", "--save-results", out,
                 "--max-frames", 12)  # fmt: skip
    cable.join(5)
    err = capfd.readouterr().err
    assert rc == 0 and "Traceback" not in err
    assert error_lines(err)[-1].startswith("tracked 12 frames") and "1 reconnects" in error_lines(err)[-1]
    rows = records(out)
    assert len(rows) == 12
    indexes = [r["frame"] for r in rows]
    assert indexes == sorted(set(indexes))  # capture order, nothing twice
    before = [r for r in rows if delivered_at[r["frame"]] < outage["end"]]
    after = [r for r in rows if delivered_at[r["frame"]] > outage["end"]]
    assert before and after and len(before) + len(after) == len(rows)  # tracking went on after the gap
    # The gap is in the timestamps (less the picture that was being read as the cable came out).
    assert after[0]["time"] - before[-1]["time"] >= 0.6 - 2 * camera.period_s
    assert all(r["box"] is not None and np.isfinite(r["box"]).all() for r in rows)


# -- the model misbehaves for a frame ------------------------------------------------------------------------


EAGER = ("--backend", "eager")


def scripted_forward(monkeypatch, script: dict[int, str]):
    """Patch the model: step k (0-based, one per tracked frame after the first) does what ``script[k]`` says:
    "nan" / "inf" return maps full of NaN / inf, "oom" raises CUDA's out-of-memory error; every other step is
    confident (score map at least 0.9), so the session's states follow from the script alone. Runs that use it
    pass ``EAGER``: an exported backend would bake the patched forward into its graph at export time."""
    original = OSTrack.forward_embedded
    steps = iter(range(10_000))

    def forward(self, *args, **kwargs):
        step = next(steps)
        if script.get(step) == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        out = original(self, *args, **kwargs)
        if script.get(step) in ("nan", "inf"):
            for key in ("score_map", "size_map", "offset_map"):
                out[key] = torch.full_like(out[key], float(script[step]))
        else:
            out["score_map"] = out["score_map"].clamp(min=0.9)
        return out

    monkeypatch.setattr(OSTrack, "forward_embedded", forward)


@pytest.mark.parametrize(
    ("script", "states"),
    [
        # one broken step: the box stays, no confidence, still tracking; the next steps are normal again
        ({2: "nan"}, ["tracking"] * 8),
        ({2: "inf"}, ["tracking"] * 8),
        # two in a row (TRACK.LOST_FRAMES 2): lost; two confident steps (RECOVER_FRAMES 2) recover it
        ({2: "nan", 3: "inf"}, ["tracking"] * 4 + ["lost", "lost", "recovered", "tracking"]),
    ],
    ids=["one NaN step", "one inf step", "two broken steps"],
)
def test_non_finite_model_output_keeps_the_box_then_recovers(tmp_path, micro, frames8, monkeypatch, script, states):
    scripted_forward(monkeypatch, script)
    out = tmp_path / "run.jsonl"
    args = ["--source", frames8, "--init-box", "20,40,30,30", "--save-results", out]
    assert run_cli(*micro_args(micro), *EAGER, *args) == 0
    rows = records(out)
    assert [r["state"] for r in rows] == states
    for step in range(7):
        row, previous = rows[step + 1], rows[step]
        if step in script:  # the last box with no confidence, or no box once that makes it lost
            assert row["score"] < 0.05 and row["box"] == (None if row["state"] == "lost" else previous["box"])
        else:  # confident; while still lost (recovering) it has no box yet
            assert row["score"] >= 0.9
            assert row["box"] is None if row["state"] == "lost" else np.isfinite(row["box"]).all()


def test_out_of_memory_in_a_step_is_one_line_and_keeps_what_was_tracked(tmp_path, micro, frames8, monkeypatch, capfd):
    scripted_forward(monkeypatch, {3: "oom"})
    out, video = tmp_path / "boxes.txt", tmp_path / "tracked.mp4"
    args = ["--source", frames8, "--init-box", "20,40,30,30", "--save-results", out, "--save-video", video]
    rc = run_cli(*micro_args(micro), *EAGER, *args)
    err = capfd.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert error_lines(err) == ["error: the computer ran out of memory while tracking; close other programs"]
    assert len(text_rows(out)) == 4  # the first frame and three steps, flushed
    assert len(video_frames(video)) == 4  # and the video was finalised: it plays


def test_gpu_out_of_memory_message_says_what_to_do():
    with pytest.raises(DeviceMemoryError) as info, memory_errors(torch.device("cuda")):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
    assert str(info.value) == (
        "the GPU ran out of memory while tracking; close other programs using it, or use --device cpu"
    )


# -- a consumer slower than the camera -----------------------------------------------------------------------


class SlowSession:
    """A session whose every step takes ``delay_s`` (a model far slower than the camera)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.box = None

    def start(self, frame, box) -> SessionResult:
        self.box = box
        return SessionResult(frame.index, frame.timestamp, box, 1.0, TrackState.TRACKING, 0.1, 1)

    def step(self, frame) -> SessionResult:
        time.sleep(self.delay_s)
        return SessionResult(frame.index, frame.timestamp, self.box, 0.9, TrackState.TRACKING, 1e3 * self.delay_s, 1)


def test_a_slow_tracker_on_a_fast_camera_keeps_memory_flat_and_counts_drops(tmp_path):
    camera = FakeCamera(period_s=0.002)  # about 500 frames a second
    source = open_source("webcam", capture_factory=camera.factory)
    tracked: list[int] = []
    samples = {}

    def sample(frame, result):
        tracked.append(frame.index)
        if len(tracked) in (5, 20):  # early and late in the run
            frames_alive = sum(type(o) is Frame for o in gc.get_objects())
            samples[len(tracked)] = (source.stats(), frames_alive, tracemalloc.get_traced_memory()[0])

    options = AppOptions(init_box=parse_box("20,40,30,30"), max_frames=25)
    tracemalloc.start()
    try:
        with Recorder(tmp_path / "run.jsonl", None) as recorder:
            progress = track_source(source, SlowSession(0.04), recorder, options, on_result=sample)
            final = source.stats()
    finally:
        tracemalloc.stop()
        source.close()
    (early, _, early_bytes), (late, frames_alive, late_bytes) = samples[5], samples[20]
    assert progress.frames == 25 and tracked == sorted(set(tracked))
    assert late.dropped > early.dropped > 0  # the drop count grows with the backlog the tracker skips
    assert late.captured > 10 * 20  # the camera ran far ahead...
    assert frames_alive <= 4 and late_bytes - early_bytes < 1_000_000  # ...yet only a handful of frames are held
    # Every captured frame was tracked, dropped, or is the one waiting in the slot (or being read).
    assert final.captured - progress.frames - final.dropped in (0, 1, 2)
    assert [r["frame"] for r in records(tmp_path / "run.jsonl")] == tracked


# -- signals at every stage ----------------------------------------------------------------------------------


def kill_self(sig: int) -> None:
    os.kill(os.getpid(), sig)


class SignalEscaped(Exception):
    pass


@pytest.fixture(autouse=True)
def sigterm_guard():
    """If the CLI had no handler of its own when a test's SIGTERM arrives, fail that test instead of letting the
    default action end the whole test run."""

    def escaped(signum, frame):
        raise SignalEscaped("SIGTERM reached the test runner: the CLI had no handler installed")

    previous = signal.signal(signal.SIGTERM, escaped)
    yield escaped
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_while_the_source_opens(tmp_path, monkeypatch, micro, capfd, sigterm_guard):
    camera = FakeCamera()

    def opening(target):
        kill_self(signal.SIGTERM)  # e.g. a stream URL that takes seconds to answer
        return camera.factory(target)

    monkeypatch.setattr(sources, "default_capture", opening)
    out = tmp_path / "boxes.txt"
    rc = run_cli(*micro_args(micro), "--source", "webcam", "--init-box", "1,1,5,5", "--save-results", out)
    assert rc == 143
    assert error_lines(capfd.readouterr().err) == ["stopped by SIGTERM before tracking started"]
    assert not out.exists() and signal.getsignal(signal.SIGTERM) is sigterm_guard  # put back


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_the_model_loads(tmp_path, frames8, monkeypatch, micro, capfd, sig, code):
    real = app.cli.build_session

    def loading(options):
        kill_self(sig)
        return real(options)

    monkeypatch.setattr(app.cli, "build_session", loading)
    out = tmp_path / "boxes.txt"
    rc = run_cli(*micro_args(micro), "--source", frames8, "--init-box", "1,1,5,5", "--save-results", out)
    assert rc == code
    assert error_lines(capfd.readouterr().err) == [f"stopped by {sig.name} before tracking started"]
    assert not out.exists()


def test_sigterm_while_waiting_for_the_first_frame(tmp_path, monkeypatch, micro, capfd):
    camera = FakeCamera()
    monkeypatch.setattr(sources, "default_capture", camera.factory)
    real = app.cli.build_session

    def unplug_after_loading(options):
        session = real(options)
        camera.plugged.clear()  # opened fine, then nothing ever arrives
        threading.Timer(0.5, kill_self, (signal.SIGTERM,)).start()
        return session

    monkeypatch.setattr(app.cli, "build_session", unplug_after_loading)
    out = tmp_path / "boxes.txt"
    rc = run_cli(*micro_args(micro), "--source", "webcam", "--init-box", "1,1,5,5", "--save-results", out)
    lines = error_lines(capfd.readouterr().err)
    assert rc == 143 and lines[0].startswith("stopped by SIGTERM after 0 frames") and len(lines) == 1
    assert out.read_text() == ""  # created, and honestly empty


@pytest.mark.parametrize(
    ("where", "sig", "code", "recorded"),
    [
        ("start", signal.SIGTERM, 143, 1),  # on the first frame: it is still tracked and recorded
        ("step", signal.SIGINT, 130, 4),  # mid-stream, in the third step: that frame is finished too
    ],
)
def test_signal_while_tracking_finishes_the_frame_and_leaves_complete_files(
    tmp_path, frames8, monkeypatch, micro, capfd, where, sig, code, recorded
):
    real = getattr(Session, where)
    calls = []

    def signalled(self, *args):
        calls.append(1)
        if where == "start" or len(calls) == 3:
            kill_self(sig)
        return real(self, *args)

    monkeypatch.setattr(Session, where, signalled)
    out, video = tmp_path / "boxes.txt", tmp_path / "tracked.mp4"
    args = ["--source", frames8, "--init-box", "20,40,30,30", "--save-results", out, "--save-video", video]
    rc = run_cli(*micro_args(micro), *args)
    err = capfd.readouterr().err
    assert rc == code and "Traceback" not in err
    assert error_lines(err)[0].startswith(f"stopped by {sig.name} after {recorded} frames")
    assert out.read_text().endswith("\n") and len(text_rows(out)) == recorded
    assert len(video_frames(video)) == recorded  # finalised: every recorded frame plays back


CHILD = textwrap.dedent(
    """
    import sys, time
    import app.cli

    def slow_model(options):
        print("loading the model", file=sys.stderr, flush=True)
        time.sleep(60)  # a large checkpoint on a slow disk

    app.cli.build_session = slow_model
    raise SystemExit(app.cli.main(sys.argv[1:]))
    """
)


def test_ctrl_c_during_model_load_in_a_real_process(tmp_path, frames8):
    out = tmp_path / "boxes.txt"
    args = ["--no-gui", "--source", str(frames8), "--init-box", "1,1,5,5", "--save-results", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        while (line := proc.stderr.readline()) and line.strip() != "loading the model":
            pass  # anything printed while importing (there should be nothing) is not what this test is about
        assert line.strip() == "loading the model"
        begin = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and time.monotonic() - begin < 10
    assert rest.strip().splitlines() == ["stopped by SIGINT before tracking started"]
    assert not out.exists()

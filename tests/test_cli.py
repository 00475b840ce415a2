"""The command line end to end: headless runs (in-process and as a subprocess), the files they write, every
user error as one line with a non-zero exit, and clean stops on SIGINT / SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types

import cv2
import numpy as np
import pytest
import torch

import tracker.weights
from app.arguments import options_from_args, parse_args
from app.cli import main
from app.options import AppOptions
from tests.helpers import CONFORMANCE, ROOT, TINY_WEIGHTS, TINY_YAML
from tracker.types import Box

TINY = ["--config", str(TINY_YAML), "--weights", str(TINY_WEIGHTS), "--device", "cpu"]
DUDEK = CONFORMANCE / "sequence" / "Dudek20" / "img"
VIDEO_SIZE = (160, 120)
SQUARE = 30  # side of the moving square in the synthetic videos


def write_video(path, frames: int, fps: float = 25.0):
    """A textured background with a bright square moving right by 2 px per frame, from (20, 40)."""
    width, height = VIDEO_SIZE
    codec = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, VIDEO_SIZE)
    background = np.random.default_rng(0).integers(0, 120, (height, width, 3), dtype=np.uint8)
    for i in range(frames):
        image = background.copy()
        x = 20 + 2 * i % (width - SQUARE - 20)
        image[40 : 40 + SQUARE, x : x + SQUARE] = (40, 220, 250)
        writer.write(image)
    writer.release()
    return path


def video_frames(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        assert image.shape[:2] == VIDEO_SIZE[::-1] or count >= 0
        count += 1
    capture.release()
    return count


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("cli") / "clip.avi", 30)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One thread: the machine's cores are shared, and two threads contending are far slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_cli(*args: str) -> int:
    return main(["--no-gui", *TINY, *map(str, args)])


def boxes(path) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in path.read_text().splitlines()]


# -- successful runs -----------------------------------------------------------------------------------------


def test_text_results_have_one_line_per_frame_and_start_with_the_init_box(clip, tmp_path, capfd):
    out = tmp_path / "boxes.txt"
    assert run_cli("--source", clip, "--init-box", "20,40,30,30", "--save-results", out) == 0
    rows = boxes(out)
    assert len(rows) == 30  # every frame of the video
    assert rows[0] == [20, 40, 30, 30]
    # a box, or no box at all on a frame the target was reported lost
    assert all(len(r) == 4 and (np.isfinite(r).all() or np.isnan(r).all()) for r in rows)
    err = capfd.readouterr().err
    assert "tracked 30 frames" in err and str(out) in err and "fps" in err and "Traceback" not in err


def test_json_lines_and_max_frames(clip, tmp_path):
    out = tmp_path / "run.jsonl"
    assert run_cli("--source", clip, "--init-box", "20,40,30,30", "--save-results", out, "--max-frames", 7) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(7))
    assert all(set(r) == {"frame", "time", "box", "score", "state", "id", "query"} for r in records)
    assert records[0]["box"] == [20, 40, 30, 30] and records[0]["state"] == "tracking"
    assert all(r["id"] == 1 and r["query"] is None and 0 <= r["score"] <= 1 for r in records)
    times = [r["time"] for r in records]
    assert times[0] == 0 and times == sorted(times)


def test_video_output_has_one_annotated_frame_per_frame(clip, tmp_path):
    video, out = tmp_path / "tracked.mp4", tmp_path / "boxes.txt"
    args = ["--source", clip, "--init-box", "20,40,30,30", "--save-video", video, "--save-results", out]
    assert run_cli(*args, "--max-frames", 12) == 0
    assert video_frames(video) == 12 == len(boxes(out))
    capture = cv2.VideoCapture(str(video))
    ok, first = capture.read()
    capture.release()
    assert ok and first.shape[:2] == VIDEO_SIZE[::-1]
    source = cv2.VideoCapture(str(clip))
    _, original = source.read()
    source.release()
    assert np.abs(first.astype(int) - original.astype(int)).mean() > 2  # drawn on, not a plain copy


def test_config_without_weights_warns_about_random_weights(clip, capfd):
    rc = main(
        [
            "--no-gui",
            "--config",
            str(TINY_YAML),
            "--source",
            str(clip),
            "--init-box",
            "20,40,30,30",
            "--max-frames",
            "2",
        ]
    )
    err = capfd.readouterr().err
    assert rc == 0 and "random weights" in err.splitlines()[0] and "tracked 2 frames" in err


def test_image_folder_source_with_the_real_sequence(tmp_path):
    out = tmp_path / "dudek.txt"
    ground_truth = (CONFORMANCE / "sequence" / "Dudek20" / "groundtruth.txt").read_text().splitlines()[0]
    assert run_cli("--source", DUDEK, "--init-box", ground_truth, "--save-results", out) == 0
    rows = boxes(out)
    assert len(rows) == 20 and rows[0] == [float(v) for v in ground_truth.split(",")]


def test_subprocess_run_through_main_py_never_loads_qt(tmp_path):
    out = tmp_path / "boxes.txt"
    code = (
        "import sys, runpy; sys.argv = ['main.py'] + sys.argv[1:]\n"
        "try:\n    runpy.run_path('main.py', run_name='__main__')\n"
        "finally:\n    assert not any(m.startswith('PyQt6') for m in sys.modules), 'Qt was imported'\n"
    )
    args = ["--no-gui", *TINY, "--source", str(DUDEK), "--init-box", "123,87,132,176", "--max-frames", "5"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, "--save-results", str(out)],
        cwd=ROOT,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(boxes(out)) == 5
    assert proc.stderr.strip().splitlines()[-1].startswith("tracked 5 frames")


# -- errors: one line, non-zero exit, no traceback -----------------------------------------------------------


def _assert_one_line_error(capfd, rc: int, expected: str, code: int = 2) -> None:
    err = capfd.readouterr().err
    assert rc == code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0] and "Traceback" not in err


@pytest.mark.parametrize(
    ("source", "box", "expected"),
    [
        ("{tmp}/missing.mp4", "1,1,5,5", "does not exist"),
        ("{tmp}", "1,1,5,5", "has no images"),
        ("ftp://example.org/a.mp4", "1,1,5,5", "unsupported URL scheme"),
        ("{clip}", "1,2,x,4", "is not four numbers"),
        ("{clip}", "1,2,3", "is not four numbers"),
        ("{clip}", "1,2,nan,4", "is not four numbers"),
        ("{clip}", "1,2,0,4", "zero or negative width or height"),
        ("{clip}", "10,10,-5,5", "zero or negative width or height"),
        ("{clip}", "500,400,20,20", "outside the 160x120 frame"),
    ],
)
def test_bad_sources_and_boxes(clip, tmp_path, capfd, source, box, expected):
    rc = run_cli("--source", source.format(tmp=tmp_path, clip=clip), "--init-box", box)
    _assert_one_line_error(capfd, rc, expected)


def test_non_video_file_named_mp4_is_one_clean_line_even_from_ffmpeg(tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_bytes(b"not a video" * 100)
    proc = subprocess.run(
        [sys.executable, "main.py", "--no-gui", *TINY, "--source", str(fake), "--init-box", "1,1,5,5"],
        cwd=ROOT,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot open {fake} as a video; check that it is a video file OpenCV can decode"
    ]


def test_missing_weights_file(clip, capfd):
    rc = main(["--no-gui", "--source", str(clip), "--init-box", "1,1,5,5", "--weights", "/no/such/file.pth"])
    _assert_one_line_error(capfd, rc, "weights file /no/such/file.pth")


def test_no_weights_and_no_bundled_model(clip, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(tracker.weights, "WEIGHTS_DIR", tmp_path)  # an empty weights folder
    rc = main(["--no-gui", "--source", str(clip), "--init-box", "1,1,5,5"])
    _assert_one_line_error(capfd, rc, "no bundled model")


def test_unwritable_results_path_is_reported_before_tracking(clip, tmp_path, capfd):
    rc = run_cli("--source", clip, "--init-box", "1,1,5,5", "--save-results", tmp_path / "nope" / "b.txt")
    _assert_one_line_error(capfd, rc, "does not exist")
    rc = run_cli("--source", clip, "--init-box", "1,1,5,5", "--save-video", tmp_path / "out.gif")
    _assert_one_line_error(capfd, rc, "unknown video format")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--query", "the red car", "--init-box", "1,1,5,5"], "not both"),
        ([], "--no-gui needs --init-box"),
        (["--init-box", "1,1,5,5", "--device", "tpu"], "--device 'tpu'"),
        (["--init-box", "1,1,5,5", "--max-frames", "0"], "--max-frames '0'"),
        (
            ["--init-box", "1,1,5,5", "--config", "no_such_model", "--weights", str(TINY_WEIGHTS)],
            "unknown config",
        ),
    ],
)
def test_other_usage_errors(clip, capfd, extra, expected):
    rc = main(["--no-gui", "--source", str(clip), *extra])
    _assert_one_line_error(capfd, rc, expected)


def test_unexpected_failure_is_one_line_and_exit_1(clip, capfd, monkeypatch):
    def broken(options):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("app.cli.build_session", broken)
    rc = run_cli("--source", clip, "--init-box", "1,1,5,5")
    err = capfd.readouterr().err
    assert rc == 1 and err.strip().splitlines() == [
        "error: unexpected ZeroDivisionError: boom; run with --debug for details"
    ]
    rc = run_cli("--source", clip, "--init-box", "1,1,5,5", "--debug")
    assert rc == 1 and "Traceback" in capfd.readouterr().err


# -- several targets ----------------------------------------------------------------------------------------

TWO_BOXES = ["--init-box", "20,40,30,30", "--init-box", "-10,80,200,30"]  # the second wider than the frame


def test_init_box_given_twice_keeps_every_box_in_order_negative_values_too():
    options = options_from_args(
        parse_args(["--init-box", "1,2,3,4", "--init-box", "-20,5,40,30", "--init-box=5,6,7,8"])
    )
    assert options.init_box == Box(1, 2, 3, 4) and options.more_boxes == (Box(-20, 5, 40, 30), Box(5, 6, 7, 8))
    assert options.init_boxes == (Box(1, 2, 3, 4), Box(-20, 5, 40, 30), Box(5, 6, 7, 8))
    assert options_from_args(parse_args([])).init_boxes == ()


def test_several_init_boxes_give_a_json_line_per_target_per_frame(clip, tmp_path, capfd):
    out, video = tmp_path / "run.jsonl", tmp_path / "tracked.avi"
    assert run_cli("--source", clip, *TWO_BOXES, "--save-results", out, "--save-video", video, "--max-frames", 6) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["frame"], r["id"]) for r in records] == [(f, i) for f in range(6) for i in (1, 2)]
    assert records[0]["box"] == [20, 40, 30, 30] and records[1]["box"] == [0, 80, 160, 30]  # cut to the frame
    assert all(r["state"] in ("tracking", "recovered", "lost") for r in records)
    assert all((r["box"] is None) == (r["state"] == "lost") for r in records)  # null exactly while lost
    assert video_frames(video) == 6
    err = capfd.readouterr().err
    assert "warning: --init-box -10,80,200,30 is larger than the 160x120 frame" in err and "0,80,160,30" in err


def test_several_init_boxes_give_mot_style_text_counted_from_frame_1(clip, tmp_path):
    out = tmp_path / "mot.txt"
    assert run_cli("--source", clip, *TWO_BOXES, "--save-results", out, "--max-frames", 6) == 0
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(f, i) for f in range(1, 7) for i in (1, 2)]
    assert all(len(r) == 7 for r in rows)
    assert [float(v) for v in rows[0][2:6]] == [20, 40, 30, 30] and [float(v) for v in rows[1][2:6]] == [0, 80, 160, 30]
    table = np.loadtxt(out, delimiter=",")
    assert table.shape == (12, 7) and np.all(np.isfinite(table[:, 6]))


def test_more_init_boxes_than_targets_allowed_is_one_line(clip, capfd):
    rc = run_cli("--source", clip, *[arg for i in range(9) for arg in ("--init-box", f"{2 + i * 3},40,20,20")])
    _assert_one_line_error(capfd, rc, "--init-box 26,40,20,20")


def test_a_bad_further_init_box_is_one_line(clip, capfd):
    rc = run_cli("--source", clip, "--init-box", "20,40,30,30", "--init-box", "1,2,x,4")
    _assert_one_line_error(capfd, rc, "--init-box '1,2,x,4' is not four numbers")
    rc = run_cli("--source", clip, "--init-box", "20,40,30,30", "--init-box", "500,400,20,20")
    _assert_one_line_error(capfd, rc, "outside the 160x120 frame")


# -- window path and help ------------------------------------------------------------------------------------


def test_without_no_gui_the_options_go_to_the_window(monkeypatch, tmp_path):
    seen = []
    fake = types.ModuleType("app.window")
    fake.run_gui = lambda options: seen.append(options) or 0
    monkeypatch.setitem(sys.modules, "app.window", fake)
    argv = ["--source", "3", "--init-box", "1,2,3,4", "--save-results", str(tmp_path / "r.jsonl"), "--debug"]
    assert main([*argv, "--query", "a dog", "--max-frames", "9", "--device", "CPU"]) == 0
    assert seen == [
        AppOptions(
            source="3",
            init_box=Box(1, 2, 3, 4),
            device="cpu",
            save_results=tmp_path / "r.jsonl",
            max_frames=9,
            query="a dog",
            debug=True,
        )
    ]


def test_help_explains_every_flag_with_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--source",
        "--init-box",
        "--no-gui",
        "--save-results",
        "--save-video",
        "--config",
        "--weights",
        "--device",
        "--max-frames",
        "--query",
        "--debug",
    ):
        assert flag in text
    assert "examples:" in text and "python main.py --no-gui --source" in text and "nan,nan,nan,nan" in text


# -- signals -------------------------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_leaves_complete_files(tmp_path, sig, code):
    clip = write_video(tmp_path / "long.avi", 600)
    out, video = tmp_path / "boxes.txt", tmp_path / "tracked.mp4"
    args = [
        "--source",
        str(clip),
        "--init-box",
        "20,40,30,30",
        "--save-results",
        str(out),
        "--save-video",
        str(video),
    ]
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--no-gui", *TINY, *args],
        cwd=ROOT,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_text().count("\n") >= 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert f"stopped by {sig.name}" in err and "Traceback" not in err
    text = out.read_text()
    assert text.endswith("\n")
    rows = boxes(out)
    assert 5 <= len(rows) < 600 and rows[0] == [20, 40, 30, 30] and all(len(r) == 4 for r in rows)
    assert video_frames(video) == len(rows)  # the video was finalised: every recorded frame plays back

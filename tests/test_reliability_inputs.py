"""Bad input through the command line: broken videos and streams, odd boxes and frames, queries, configs and
output paths. Each is one clear line and a non-zero exit, or is tracked with nothing lost; never a traceback.
(Cases test_cli.py already proves, such as missing files or a malformed --init-box, are not repeated.)"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from app import record
from app.arguments import parse_box
from app.cli import track_source
from app.options import AppOptions
from app.record import Recorder
from app.sources import open_source
from tests.helpers import ROOT, FullDisk
from tests.test_reliability_common import (
    MICRO_YAML,
    TINY,
    FakeCamera,
    assert_one_line_error,
    error_lines,
    micro_args,
    one_torch_thread,  # noqa: F401 (an autouse fixture)
    run_cli,
    scene,
    text_rows,
    video_frames,
    within,
    write_video,
)
from tracker import Session, build_tracker


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clip") / "clip.avi", 8)


def image_folder(folder, images):
    folder.mkdir()
    for i, image in enumerate(images):
        assert cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return folder


# -- broken videos, streams and cameras: run in a fresh process, as a user would --------------------------------
# (FFmpeg reads its log level once per process; a process that already used it, like pytest's, would show its
# messages, which a user running main.py never sees.)

CHILD = textwrap.dedent(
    """
    import json, socket, sys, threading, time
    from app import sources
    from app.cli import main

    sources.OPEN_TIMEOUT_MS = 1500  # keep the test short; the default is 5 s

    # A server that accepts connections and never answers: the worst case for a client without a timeout.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept_forever():
        while True:
            held.append(server.accept())

    threading.Thread(target=accept_forever, daemon=True).start()
    port = server.getsockname()[1]
    report = {}
    for name, argv in json.loads(sys.argv[1]).items():
        argv = [a.replace("{silent_port}", str(port)) for a in argv]
        begin = time.monotonic()
        code = main(argv)
        report[name] = [code, time.monotonic() - begin]
        print(SEPARATOR, file=sys.stderr, flush=True)
    print(json.dumps(report))
    """
)
SEPARATOR = "----- next run -----"
OPEN_TIMEOUT_S = 1.5  # as set in the child
STREAMS = {
    "refused rtsp": "rtsp://127.0.0.1:9/x",
    "refused http": "http://127.0.0.1:9/x",
    "refused https": "https://127.0.0.1:9/x",
    "refused rtsps": "rtsps://127.0.0.1:9/x",
    "silent http": "http://127.0.0.1:{silent_port}/x",
    "silent rtsp": "rtsp://127.0.0.1:{silent_port}/x",
    "webcam 57": "57",
    "gopher": "gopher://127.0.0.1/x",
    "file url": "file:///etc/hostname",
    "udp": "udp://127.0.0.1:9",
}


@pytest.fixture(scope="module")
def fresh_process(tmp_path_factory, micro):
    """Every run below in one new process: {name: (exit code, seconds, stderr lines, folder)}."""
    folder = tmp_path_factory.mktemp("fresh")
    runs = {name: ["--no-gui", *TINY, "--source", spec, "--init-box", "1,1,5,5"] for name, spec in STREAMS.items()}
    for suffix in (".mp4", ".avi"):
        whole = write_video(folder / f"whole{suffix}", 16)
        assert len(video_frames(whole)) == 16  # a good video before the cut
        data = whole.read_bytes()
        (folder / f"cut{suffix}").write_bytes(data[: len(data) // 2])
        source, out = folder / f"cut{suffix}", folder / f"cut{suffix}.jsonl"
        args = ["--source", source, "--init-box", "20,40,30,30", "--save-results", out]
        runs[f"cut{suffix}"] = ["--no-gui", *micro_args(micro), *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    code = f"SEPARATOR = {SEPARATOR!r}\n" + CHILD
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(runs)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    outputs = proc.stderr.split(SEPARATOR + "\n")
    assert list(report) == list(runs) and len(outputs) == len(runs) + 1 and outputs[-1] == ""
    return {
        name: (code, seconds, err.strip().splitlines(), folder)
        for (name, (code, seconds)), err in zip(report.items(), outputs, strict=False)
    }


def test_mp4_cut_in_half_is_one_line_and_creates_no_output(fresh_process):
    code, _, lines, folder = fresh_process["cut.mp4"]
    assert code == 2
    assert lines == [
        f"error: cannot open {folder / 'cut.mp4'} as a video; check that it is a video file OpenCV can decode"
    ]
    assert not (folder / "cut.mp4.jsonl").exists()


def test_avi_cut_in_half_tracks_what_is_readable_and_says_the_file_is_truncated(fresh_process):
    code, _, lines, folder = fresh_process["cut.avi"]
    readable = len(video_frames(folder / "cut.avi"))
    assert code == 0 and 0 < readable < 16
    records = [json.loads(line) for line in (folder / "cut.avi.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(readable))  # every readable frame, in order
    assert len(lines) == 2 and lines[0].startswith(f"tracked {readable} frames")
    assert lines[1] == (
        f"warning: cut.avi ended after {readable} of the 16 frames its header announces; "
        "the file may be truncated or damaged"
    )


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_streams_cameras_and_schemes_fail_fast_with_one_line(fresh_process, name):
    code, seconds, lines, _ = fresh_process[name]
    spec = STREAMS[name]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), lines  # no FFmpeg or OpenCV chatter
    if name == "webcam 57":
        assert lines[0] == "error: cannot open webcam 57; check that a camera is connected and free"
    elif name in ("gopher", "file url", "udp"):
        assert "unsupported URL scheme" in lines[0]
    else:
        assert lines[0].startswith(f"error: cannot open {spec.split('{')[0]}")
    assert seconds < OPEN_TIMEOUT_S + 3.0, f"{spec} took {seconds:.1f} s"  # the open timeout, not a hang


# -- boxes ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames4(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("boxes") / "frames", [scene(i) for i in range(4)])


@pytest.mark.parametrize("box", ["0,0,2000,2000", "-1e308,-1e308,1.5e308,1.5e308", "-10,30,500,20"])
def test_a_box_larger_than_the_frame_follows_the_part_inside_it(frames4, micro, tmp_path, capfd, box):
    out = tmp_path / "boxes.txt"
    rc = run_cli(*micro_args(micro), "--source", frames4, "--init-box", box, "--save-results", out)
    err = capfd.readouterr().err
    assert rc == 0 and "Traceback" not in err
    rows = text_rows(out)
    x, y, w, h = (float(v) for v in box.split(","))
    inside = [max(x, 0), max(y, 0), min(x + w, 160) - max(x, 0), min(y + h, 120) - max(y, 0)]
    assert rows[0] == inside
    assert len(rows) == 4 and np.isfinite(rows).all()
    clipped = ",".join(f"{v:g}" for v in inside)
    assert f"is larger than the 160x120 frame; following the part inside it, {clipped}" in err


@pytest.mark.parametrize("box", ["5,5,1,1", "159,119,1,1", "150,110,30,30", "-20,-20,25,25"])
def test_one_pixel_and_border_boxes_are_tracked(frames4, micro, tmp_path, capfd, box):
    out = tmp_path / "boxes.txt"
    rc = run_cli(*micro_args(micro), "--source", frames4, "--init-box", box, "--save-results", out)
    err = capfd.readouterr().err
    assert rc == 0 and "Traceback" not in err and "warning" not in err
    rows = text_rows(out)
    assert rows[0] == [float(v) for v in box.split(",")]  # the box as given
    assert len(rows) == 4 and np.isfinite(rows).all()
    for x, y, w, h in rows[1:]:
        assert within([x, y, w, h], 160, 120)


# -- frames of changing size and of every pixel format -----------------------------------------------------


def test_folder_whose_images_change_size_is_tracked_to_the_end(tmp_path, micro, capfd):
    sizes = [(160, 120), (160, 120), (80, 60), (640, 480), (33, 17), (160, 120)]
    folder = image_folder(tmp_path / "mixed", [scene(i, size) for i, size in enumerate(sizes)])
    out, video = tmp_path / "boxes.txt", tmp_path / "tracked.mp4"
    args = ["--source", folder, "--init-box", "20,40,30,30", "--save-results", out, "--save-video", video]
    rc = run_cli(*micro_args(micro), *args)
    err = capfd.readouterr().err
    assert rc == 0 and "Traceback" not in err
    rows = text_rows(out)
    assert len(rows) == len(sizes) and np.isfinite(rows).all()
    for (x, y, w, h), (width, height) in zip(rows[1:], sizes[1:], strict=True):
        assert within([x, y, w, h], width, height)  # inside the frame it was found in
    pictures = video_frames(video)
    assert len(pictures) == len(sizes) and all(p.shape == (120, 160, 3) for p in pictures)  # fitted to frame 0


def test_live_camera_that_changes_resolution_mid_stream(tmp_path, micro):
    camera = FakeCamera(period_s=0.02)
    source = open_source("webcam", capture_factory=camera.factory)
    session = Session(build_tracker(None, micro, device="cpu"))
    out = tmp_path / "live.jsonl"
    shapes = {}

    def watch(frame, result):
        shapes[frame.index] = frame.image.shape
        if len(shapes) == 3:
            camera.size = (64, 48)  # the camera switches mode: every later picture is smaller
        if len(shapes) == 6:
            camera.size = (320, 240)

    video = tmp_path / "live.mp4"
    options = AppOptions(init_box=parse_box("100,80,40,30"), max_frames=9, save_results=out, save_video=video)
    with Recorder(out, video) as recorder:
        try:
            progress = track_source(source, session, recorder, options, on_result=watch)
        finally:
            source.close()
    assert progress.frames == 9
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 9 and {s[:2] for s in shapes.values()} >= {(120, 160), (48, 64), (240, 320)}
    for r in records:
        height, width = shapes[r["frame"]][:2]
        assert within(r["box"], width, height)
    assert len(video_frames(video)) == 9


def _sixteen_bit(i):
    return scene(i).astype(np.uint16) * 257 + 1  # 8-bit value v becomes (v << 8) + v + 1


PIXEL_FORMATS = {
    "grey": (lambda i: cv2.cvtColor(scene(i), cv2.COLOR_BGR2GRAY), "20,40,30,30"),
    "grey16": (lambda i: cv2.cvtColor(scene(i), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257, "20,40,30,30"),
    "bgr16": (_sixteen_bit, "20,40,30,30"),
    "bgra": (lambda i: cv2.cvtColor(scene(i), cv2.COLOR_BGR2BGRA), "20,40,30,30"),
    "tiny8x8": (lambda i: np.ascontiguousarray(scene(i)[40:48, 20 + 2 * i : 28 + 2 * i]), "1,1,4,4"),
}


@pytest.mark.parametrize("kind", sorted(PIXEL_FORMATS))
def test_grey_16_bit_four_channel_and_tiny_images_through_the_cli(tmp_path, micro, capfd, kind):
    make, box = PIXEL_FORMATS[kind]
    images = [make(i) for i in range(3)]
    folder = image_folder(tmp_path / kind, images)
    # The source hands every sink one layout, 8-bit BGR, converted as cv2.imread's colour mode does it
    # (16 bits keep the high byte, grey is copied to three channels, alpha is dropped).
    with open_source(str(folder)) as source:
        first = source.read(5.0)
    expected = images[0]
    if expected.dtype == np.uint16:
        expected = (expected >> 8).astype(np.uint8)
    if expected.ndim == 2:
        expected = cv2.cvtColor(expected, cv2.COLOR_GRAY2BGR)
    elif expected.shape[2] == 4:
        expected = expected[:, :, :3]
    assert first.image.dtype == np.uint8 and np.array_equal(first.image, expected)

    out, video = tmp_path / "boxes.txt", tmp_path / "tracked.avi"
    args = ["--source", folder, "--init-box", box, "--save-results", out, "--save-video", video]
    rc = run_cli(*micro_args(micro), *args)
    err = capfd.readouterr().err
    assert rc == 0 and "Traceback" not in err
    rows = text_rows(out)
    assert len(rows) == 3 and np.isfinite(rows).all()
    pictures = video_frames(video)
    assert len(pictures) == 3 and pictures[0].shape == (*expected.shape[:2], 3)


# -- queries ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", " \t\n "], ids=["empty", "whitespace"])
def test_empty_queries_on_the_command_line(clip, capfd, query):
    rc = run_cli(*TINY, "--source", clip, "--query", query)
    assert rc == 2
    assert_one_line_error(capfd.readouterr().err, "--query is empty")


@pytest.mark.parametrize("query", ["boat " * 2000, "белая лодка 白い船"], ids=["10000 characters", "non-Latin"])
def test_long_and_non_latin_queries_are_grounded(clip, capfd, tmp_path, query):
    out = tmp_path / "q.jsonl"
    rc = run_cli(*TINY, "--source", clip, "--query", query, "--max-frames", "3", "--save-results", out)
    err = capfd.readouterr().err
    assert rc == 0 and "Traceback" not in err
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2]
    assert all(r["query"] and len(r["query"]) <= len(query.strip()) for r in records)


def test_a_grounding_model_that_is_not_there_is_one_line(clip, capfd, tmp_path):
    missing = tmp_path / "no_such_grounder.safetensors"
    rc = run_cli(*TINY, "--source", clip, "--query", "the boat", "--grounding-weights", missing)
    assert rc == 2
    assert_one_line_error(capfd.readouterr().err, "no_such_grounder.safetensors")


def test_the_grounding_model_named_is_the_one_that_grounds(clip, capfd, tmp_path, monkeypatch):
    import app.options
    from tracker.grounding import build_grounder

    asked = []

    def recording(weights=None, device="auto", **kwargs):
        asked.append(weights)
        return build_grounder(weights=weights, device=device, **kwargs)

    monkeypatch.setattr(app.options, "build_grounder", recording)
    bundled = ROOT / "weights" / "grounding_small_v2.safetensors"
    out = tmp_path / "q.jsonl"
    rc = run_cli(*TINY, "--source", clip, "--query", "the boat", "--grounding-weights", bundled,
                 "--max-frames", "2", "--save-results", out)
    assert rc == 0 and "Traceback" not in capfd.readouterr().err
    assert asked == [str(bundled)] and len(out.read_text().splitlines()) == 2


# -- configs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda text: text + "TRAK: {LOST_FRAMES: 3}\n", "unknown key TRAK"),
        (lambda text: text.replace("LOST_FRAMES: 2", "LOST_FRAMES: two"), "TRACK.LOST_FRAMES must be int"),
        (lambda text: text.replace("LOST_SCORE: 0.3", "LOST_SCORE: .nan"), "TRACK.LOST_SCORE must be a score"),
        (lambda text: text.replace("LOST_FRAMES: 2", "LOST_FRAMES: -1"), "TRACK.LOST_FRAMES must be at least 1"),
        (lambda text: text.replace("SEARCH_SIZE: 64", "SEARCH_SIZE: 128"), "TEST.SEARCH_SIZE 128 differs"),
        (lambda text: "- " + text.replace("\n", "\n  "), "the top level must be a mapping"),
        (lambda text: text.replace("DATA:", "DATA: [", 1), "not a readable YAML file"),
    ],
)
def test_bad_config_yaml_is_one_line_before_anything_is_written(tmp_path, micro, clip, capfd, change, expected):
    path = tmp_path / "mine.yaml"
    path.write_text(change(MICRO_YAML))
    out = tmp_path / "boxes.txt"
    rc = run_cli("--config", path, *micro_args(micro), "--source", clip, "--init-box", "1,1,5,5", "--save-results", out)
    assert rc == 2
    assert str(path) in assert_one_line_error(capfd.readouterr().err, expected)
    assert not out.exists()


# -- output paths --------------------------------------------------------------------------------------------


def test_disk_full_mid_run_keeps_the_lines_written_and_the_video_and_exits_2(tmp_path, micro, monkeypatch, capfd):
    folder = image_folder(tmp_path / "frames", [scene(i) for i in range(6)])
    real_open = record._open_text
    monkeypatch.setattr(record, "_open_text", lambda path: FullDisk(real_open(path), room=3))
    out, video = tmp_path / "boxes.txt", tmp_path / "tracked.avi"
    args = ["--source", folder, "--init-box", "20,40,30,30", "--save-results", out, "--save-video", video]
    rc = run_cli(*micro_args(micro), *args)
    err = capfd.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = error_lines(err)
    assert lines[0].startswith("tracked 6 frames")  # tracking went on to the end
    assert lines[-1] == f"error: recording to {out} stopped: the disk is full; tracking goes on"
    assert len(text_rows(out)) == 3  # what was written before the disk filled is intact
    assert len(video_frames(video)) == 6


def test_unwritable_outputs_are_refused_before_the_model_loads(tmp_path, clip, monkeypatch, capfd):
    def refuse(*args, **kwargs):  # a read-only folder, simulated: the tests may run as root
        raise PermissionError(errno.EACCES, "Permission denied")

    rc = run_cli(*TINY, "--source", clip, "--init-box", "1,1,5,5", "--save-results", tmp_path)
    assert rc == 2
    assert_one_line_error(capfd.readouterr().err, "is a folder; give a file name")
    monkeypatch.setattr(record.tempfile, "NamedTemporaryFile", refuse)
    rc = run_cli(*TINY, "--source", clip, "--init-box", "1,1,5,5", "--save-video", tmp_path / "out.mp4")
    assert rc == 2
    assert_one_line_error(capfd.readouterr().err, "permission denied; choose another folder")
    assert not list(tmp_path.iterdir())


def test_an_output_that_would_overwrite_the_source_or_the_other_output_is_refused(tmp_path, capfd):
    source = write_video(tmp_path / "clip.mp4", 6)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    (tmp_path / "sub").mkdir()
    again = tmp_path / "sub" / ".." / "clip.mp4"  # the same file, named another way
    rc = run_cli(*TINY, "--source", source, "--init-box", "1,1,5,5", "--save-video", again)
    assert rc == 2
    assert_one_line_error(capfd.readouterr().err, "is the source being tracked; choose another name")
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    same = tmp_path / "out.mp4"
    rc = run_cli(*TINY, "--source", source, "--init-box", "1,1,5,5", "--save-results", same, "--save-video", same)
    assert rc == 2
    assert_one_line_error(capfd.readouterr().err, "results and video both go to")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "sub"]

"""Recorder: text and JSON-lines results (one target, and several: MOTChallenge-style text, a JSON line per
target), the annotated video, and failures that stop recording but never tracking (missing folder up front, disk
full and encoder failure later)."""

from __future__ import annotations

import errno
import json
import math

import cv2
import numpy as np
import pytest

from app import record
from app.record import Recorder, RecordingError, text_line
from tests.helpers import FullDisk
from tracker.errors import TrackerError
from tracker.types import Box, SessionResult, TargetResult, TrackState


def result(i: int, box: Box | None = None, state=TrackState.TRACKING, score=0.8, t0=100.0, **extra):
    return SessionResult(
        frame_index=i,
        timestamp=t0 + i / 25,
        box=box,
        score=score,
        state=state,
        target_id=extra.get("target_id", 1),
        query=extra.get("query"),
    )


def count_video_frames(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_text_results_have_one_line_per_frame_and_nan_without_a_box(tmp_path):
    path = tmp_path / "boxes.txt"
    with Recorder(path, None) as recorder:
        recorder.write(result(0, Box(10, 20, 30, 40)))
        recorder.write(result(1, Box(10.5, 20.25, 30.125, 40.0004)))
        recorder.write(result(2, None, TrackState.IDLE))
        recorder.write(result(3, Box(-1.5, 0, 7, 8), TrackState.LOST, 0.1))
        assert path.read_text().count("\n") == 4  # flushed per frame, readable before close
    lines = path.read_text().splitlines()
    assert lines == ["10,20,30,40", "10.5,20.25,30.125,40", "nan,nan,nan,nan", "-1.5,0,7,8"]
    assert np.loadtxt(path, delimiter=",").shape == (4, 4)  # the layout toolkits read
    assert recorder.results_written == 4 and recorder.error is None


def test_json_lines_have_every_field(tmp_path):
    path = tmp_path / "run.jsonl"
    with Recorder(path, None) as recorder:
        recorder.write(result(5, Box(1, 2, 3, 4), score=1.0))
        recorder.write(result(6, Box(2, 3, 4, 5), TrackState.RECOVERED, 0.61234567, query="red car", target_id=3))
        recorder.write(result(7, None, TrackState.IDLE, 0.0, target_id=None))
        recorder.write(result(8, Box(math.nan, 0, 1, 1), TrackState.LOST, math.nan))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [set(r) for r in records] == [{"frame", "time", "box", "score", "state", "id", "query"}] * 4
    assert records[0] == {
        "frame": 5,
        "time": 0.0,
        "box": [1, 2, 3, 4],
        "score": 1.0,
        "state": "tracking",
        "id": 1,
        "query": None,
    }
    assert records[1]["time"] == pytest.approx(0.04) and records[1]["score"] == pytest.approx(0.6123)
    assert (records[1]["state"], records[1]["id"], records[1]["query"]) == ("recovered", 3, "red car")
    assert records[2]["box"] is None and records[2]["id"] is None and records[2]["state"] == "idle"
    assert records[3]["box"] is None and records[3]["score"] is None  # never invalid JSON (NaN)


def test_video_is_readable_and_frames_of_another_size_are_fitted(tmp_path):
    path = tmp_path / "out.mp4"
    with Recorder(None, path, fps=10) as recorder:
        assert not path.exists()  # opened lazily, on the first annotated frame
        for i in range(6):
            size = (64, 48) if i % 2 == 0 else (100, 30)
            image = np.full((size[1], size[0], 3), 40 * i, np.uint8)
            recorder.write(result(i, Box(1, 1, 5, 5)), image)
        recorder.write(result(6, Box(1, 1, 5, 5)))  # no picture for this frame: nothing added to the video
    assert recorder.error is None and recorder.video_frames == 6
    capture = cv2.VideoCapture(str(path))
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    capture.release()
    assert count_video_frames(path) == 6


def test_avi_video_with_grey_frames(tmp_path):
    path = tmp_path / "out.avi"
    with Recorder(None, path) as recorder:
        for i in range(3):
            recorder.write(result(i, None, TrackState.IDLE), np.full((24, 32), 100, np.uint8))
    assert count_video_frames(path) == 3


@pytest.mark.parametrize(
    ("results", "video", "message"),
    [
        ("missing/boxes.txt", None, "folder .* does not exist"),
        (None, "missing/out.mp4", "folder .* does not exist"),
        (None, "out.gif", "unknown video format"),
        (".", None, "is a folder"),
    ],
)
def test_unusable_paths_are_refused_up_front(tmp_path, results, video, message):
    with pytest.raises(RecordingError, match=message) as info:
        Recorder(tmp_path / results if results else None, tmp_path / video if video else None)
    assert isinstance(info.value, TrackerError) and "\n" not in str(info.value)
    assert not (tmp_path / "missing").exists()


def test_read_only_folder_is_refused_up_front(tmp_path, monkeypatch):
    # Simulated: the tests may run as root, for whom chmod does not make a folder read-only.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(record.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(RecordingError, match="permission denied"):
        Recorder(tmp_path / "boxes.txt", None)
    assert not (tmp_path / "boxes.txt").exists()


def test_disk_full_stops_recording_without_raising_and_keeps_what_was_written(tmp_path, monkeypatch):
    path = tmp_path / "boxes.txt"
    recorder = Recorder(path, tmp_path / "out.avi")
    monkeypatch.setattr(recorder, "_results_file", FullDisk(recorder._results_file, room=3))
    picture = np.zeros((24, 32, 3), np.uint8)
    for i in range(6):
        recorder.write(result(i, Box(i, i, 5, 5)), picture)  # must not raise
    assert recorder.error is not None and "disk is full" in recorder.error and "\n" not in recorder.error
    assert recorder.results_written == 3
    recorder.close()
    recorder.close()
    assert path.read_text().splitlines() == ["0,0,5,5", "1,1,5,5", "2,2,5,5"]
    assert count_video_frames(tmp_path / "out.avi") == 6  # the other output went on


def test_video_encoder_failure_stops_only_the_video(tmp_path, monkeypatch):
    class BrokenWriter:
        def __init__(self, *args):
            pass

        def isOpened(self):  # the cv2.VideoWriter name
            return False

        def release(self):
            pass

    monkeypatch.setattr(record.cv2, "VideoWriter", BrokenWriter)
    recorder = Recorder(tmp_path / "boxes.txt", tmp_path / "out.mp4")
    for i in range(3):
        recorder.write(result(i, Box(1, 1, 2, 2)), np.zeros((8, 8, 3), np.uint8))
    recorder.close()
    assert "video recording" in recorder.error and "tracking goes on" in recorder.error
    assert len((tmp_path / "boxes.txt").read_text().splitlines()) == 3


def test_write_after_close_is_ignored_and_close_is_idempotent(tmp_path):
    path = tmp_path / "boxes.txt"
    recorder = Recorder(path, None)
    recorder.write(result(0, Box(1, 2, 3, 4)))
    recorder.close()
    recorder.write(result(1, Box(1, 2, 3, 4)))
    recorder.close()
    assert path.read_text() == "1,2,3,4\n"


def test_text_line_formats_numbers_compactly():
    assert text_line(Box(1.0, -0.0001, 2.5, 3.123456)) == "1,0,2.5,3.123"
    assert text_line(None) == "nan,nan,nan,nan"
    assert text_line(Box(math.inf, 0, 1, 1)) == "nan,nan,nan,nan"


# -- several targets -----------------------------------------------------------------------------------------

LOST = TrackState.LOST


def targets_result(i: int, *targets: TargetResult, t0=100.0) -> SessionResult:
    """A box session's result: the primary fields are the first target's, as the session reports them."""
    first = targets[0] if targets else None
    return SessionResult(
        frame_index=i,
        timestamp=t0 + i / 25,
        box=first.box if first else None,
        score=first.score if first else 0.0,
        state=first.state if first else TrackState.IDLE,
        target_id=first.target_id if first else None,
        targets=targets,
        last_seen=first.last_seen if first else None,
    )


def target(target_id: int, box: Box | None, state=TrackState.TRACKING, score=0.9, last_seen=None) -> TargetResult:
    return TargetResult(target_id, box, score, state, last_seen or box)


def test_several_targets_give_mot_lines_counted_from_frame_1_with_nan_while_lost(tmp_path):
    path = tmp_path / "mot.txt"
    with Recorder(path, None) as recorder:
        recorder.write(targets_result(0, target(1, Box(10, 20, 30, 40), score=1.0), target(2, Box(50, 60, 7, 8))))
        recorder.write(targets_result(1, target(1, Box(11, 20, 30, 40)), target(2, None, LOST, 0.05, Box(5, 6, 7, 8))))
        recorder.write(targets_result(2))  # nothing followed (a reset in the window): no line
        recorder.write(targets_result(3, target(3, Box(1.25, 2, 3, 4), score=0.123456)))  # one target, same layout
        assert recorder.results_written == 4
    assert path.read_text().splitlines() == [
        "1,1,10,20,30,40,1",
        "1,2,50,60,7,8,0.9",
        "2,1,11,20,30,40,0.9",
        "2,2,nan,nan,nan,nan,0.05",
        "4,3,1.25,2,3,4,0.1235",
    ]
    table = np.loadtxt(path, delimiter=",")  # the layout MOT toolkits read
    assert table.shape == (5, 7) and np.isnan(table[3, 2:6]).all()


def test_the_layout_is_chosen_on_the_first_frame_and_kept(tmp_path):
    one = target(1, Box(1, 2, 3, 4))
    two = (one, target(2, Box(5, 6, 7, 8)))
    told: list[str] = []
    with Recorder(tmp_path / "single.txt", None, note=told.append) as recorder:
        recorder.write(targets_result(0, one))
        recorder.write(targets_result(1, *two))  # a target added later: the file keeps to the first
        recorder.write(targets_result(2, target(1, None, LOST, 0.1, Box(1, 2, 3, 4)), two[1]))
    assert (tmp_path / "single.txt").read_text().splitlines() == ["1,2,3,4", "1,2,3,4", "nan,nan,nan,nan"]
    assert len(told) == 1 and "#1" in told[0] and ".jsonl" in told[0] and "\n" not in told[0]  # said once
    with Recorder(tmp_path / "told.txt", None, multi=True) as recorder:  # told there will be several
        recorder.write(targets_result(0, one))
        recorder.write(targets_result(1, *two))
    assert (tmp_path / "told.txt").read_text().splitlines() == ["1,1,1,2,3,4,0.9", "2,1,1,2,3,4,0.9", "2,2,5,6,7,8,0.9"]


def test_json_lines_have_one_line_per_target_and_null_while_lost(tmp_path):
    path = tmp_path / "run.jsonl"
    with Recorder(path, None) as recorder:
        recorder.write(targets_result(0, target(1, Box(1, 2, 3, 4))))
        recorder.write(targets_result(1, target(1, Box(1, 2, 3, 4)), target(2, Box(5, 6, 7, 8), score=1.0)))
        recorder.write(targets_result(2, target(1, Box(2, 2, 3, 4)), target(2, None, LOST, 0.1, Box(5, 6, 7, 8))))
        recorder.write(targets_result(3))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(r) == {"frame", "time", "box", "score", "state", "id", "query"} for r in records)
    assert [(r["frame"], r["id"]) for r in records] == [(0, 1), (1, 1), (1, 2), (2, 1), (2, 2), (3, None)]
    assert records[2] == {"frame": 1, "time": 0.04, "box": [5, 6, 7, 8], "score": 1.0, "state": "tracking",
                          "id": 2, "query": None}  # fmt: skip
    assert (records[4]["box"], records[4]["state"], records[4]["score"]) == (None, "lost", 0.1)
    assert (records[5]["box"], records[5]["state"]) == (None, "idle")


def test_a_lost_primary_without_a_target_list_writes_nan_and_null(tmp_path):
    lost = SessionResult(4, 1.0, None, 0.1, LOST, target_id=1, last_seen=Box(1, 2, 3, 4))
    with Recorder(tmp_path / "boxes.txt", None) as text, Recorder(tmp_path / "run.jsonl", None) as lines:
        text.write(lost)
        lines.write(lost)
    assert (tmp_path / "boxes.txt").read_text() == "nan,nan,nan,nan\n"
    record = json.loads((tmp_path / "run.jsonl").read_text())
    assert (record["box"], record["state"], record["id"]) == (None, "lost", 1)


def test_disk_full_with_several_targets_keeps_whole_frames(tmp_path, monkeypatch):
    path = tmp_path / "mot.txt"
    recorder = Recorder(path, None, multi=True)
    monkeypatch.setattr(recorder, "_results_file", FullDisk(recorder._results_file, room=2))
    for i in range(4):
        recorder.write(targets_result(i, target(1, Box(i, 0, 5, 5)), target(2, Box(0, i, 5, 5))))
    recorder.close()
    assert "disk is full" in recorder.error and recorder.results_written == 2
    assert path.read_text().splitlines() == ["1,1,0,0,5,5,0.9", "1,2,0,0,5,5,0.9", "2,1,1,0,5,5,0.9", "2,2,0,1,5,5,0.9"]

"""Result and video writers: every recorded frame is on disk before the next one is tracked.

Formats (one record per frame the session processed, in order; a lost target has no box, the session reports
only where it was last seen):

- results text (``.txt`` or any suffix but ``.jsonl``), one target: one ``x,y,w,h`` line in frame pixels, the
  layout tracker toolkits read; the first line is the initial box. A frame with no box (before a box is drawn,
  after a reset in the window, or while the target is lost) is written ``nan,nan,nan,nan`` so line *n* is always
  frame *n*;
- results text, several targets: MOTChallenge-style ``frame,id,x,y,w,h,score`` lines, one per target per frame,
  where ``frame`` counts from 1 (MOTChallenge's convention: the JSON-lines ``frame`` plus one) and a lost target
  has ``nan`` for x, y, w and h; a frame with no target followed has no line. The layout is chosen on the first
  frame written and kept for the whole file: several targets then (or ``multi=True``) give this one. A file begun
  with one target keeps following only the primary target when more are added later, and says so once
  (``note``);
- results JSON lines (``.jsonl``): ``{"frame", "time", "box", "score", "state", "id", "query"}`` per target per
  frame (one line per frame with one target or none), where ``frame`` is the source's frame index from 0,
  ``time`` is seconds since the first recorded frame and ``box`` is ``[x, y, w, h]``, or ``null`` when there is
  none (idle, or that target is lost: ``"state": "lost"``);
- video (``.mp4``/``.m4v``/``.mov`` with mp4v, ``.avi`` with MJPG): the annotated frames, sized like the
  first one.

An unusable path raises ``RecordingError`` when the recorder is made, before any tracking. A failure later on
(disk full, device gone) only stops that output and sets ``error``: recording never breaks tracking.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from app.targets import followed
from tracker.errors import TrackerError
from tracker.types import Box, SessionResult, TargetResult

VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
DEFAULT_VIDEO_FPS = 30.0
BOX_DECIMALS = 3  # a thousandth of a pixel: finer than any tracker is accurate, short lines
SCORE_DECIMALS = 4
NAN_LINE = "nan,nan,nan,nan"


class RecordingError(TrackerError):
    """An output file cannot be written (missing or read-only folder, unknown video format)."""


class Recorder:
    """Writes results (text or JSON lines) and/or an annotated video; either path may be None.

    ``multi``: a results text file gets the several-targets layout even if the first frame has one target;
    ``note`` is told, once, when a one-target text file leaves out targets added later."""

    def __init__(
        self,
        results_path: Path | None,
        video_path: Path | None,
        fps: float = DEFAULT_VIDEO_FPS,
        *,
        multi: bool = False,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.results_path = Path(results_path) if results_path is not None else None
        self.video_path = Path(video_path) if video_path is not None else None
        self.fps = fps if fps and math.isfinite(fps) and fps > 0 else DEFAULT_VIDEO_FPS
        self.results_written = 0
        self.video_frames = 0
        self._error: str | None = None
        self._closed = False
        # Re-entrant: close() may run from a signal handler while write() holds the lock in the same thread.
        self._lock = threading.RLock()
        self._jsonl = self.results_path is not None and self.results_path.suffix.lower() == ".jsonl"
        self._first_time: float | None = None
        self._multi: bool | None = True if multi else None  # the text layout; None until the first frame
        self._note = note
        self._noted = False
        self._video: cv2.VideoWriter | None = None
        self._video_size: tuple[int, int] | None = None
        self._video_failed = False
        if self.video_path is not None:
            check_video_path(self.video_path)
        self._results_file: TextIO | None = None
        if self.results_path is not None:
            check_output_path(self.results_path, "results")
            self._results_file = _open_text(self.results_path)

    @property
    def error(self) -> str | None:
        """Why recording stopped (one line), or None while everything is being written."""
        return self._error

    def write(self, result: SessionResult, annotated: np.ndarray | None = None) -> None:
        """Record one frame's result and, when a video path was given, its annotated picture. Never raises."""
        with self._lock:
            if self._closed:
                return
            if self._results_file is not None:
                self._write_results(result)
            if annotated is not None and self.video_path is not None and not self._video_failed:
                self._write_video(annotated)

    def close(self) -> None:
        """Flush and close every output. Safe to call more than once, from ``finally``, atexit or signals."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            file, self._results_file = self._results_file, None
            if file is not None:
                try:
                    file.close()
                except OSError as err:
                    self._fail(self.results_path, err)
            video, self._video = self._video, None
            if video is not None:
                video.release()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- results ---------------------------------------------------------------------------------------------

    def _write_results(self, result: SessionResult) -> None:
        if self._first_time is None:
            self._first_time = result.timestamp
        text = "".join(line + "\n" for line in self._lines(result))
        try:
            if text:
                self._results_file.write(text)  # a frame's lines in one write: a frame is on disk whole or not
                self._results_file.flush()  # one frame at a time: a crash loses nothing already tracked
        except OSError as err:
            self._stop_results(err)
            return
        self.results_written += 1

    def _lines(self, result: SessionResult) -> list[str]:
        if self._jsonl:
            return self._json_lines(result)
        if self._multi is None:
            self._multi = len(result.targets) > 1
        if self._multi:
            return mot_lines(result)
        if len(result.targets) > 1:
            self._say_primary_only(result)
        return [text_line(result.box)]

    def _json_lines(self, result: SessionResult) -> list[str]:
        base = {
            "frame": result.frame_index,
            "time": round(result.timestamp - (self._first_time or result.timestamp), 6),
        }
        if not result.targets:
            return [_json_record(base, result.box, result.score, result.state.value, result.target_id, result.query)]
        return [_json_record(base, t.box, t.score, t.state.value, t.target_id, result.query) for t in result.targets]

    def _say_primary_only(self, result: SessionResult) -> None:
        if self._noted or self._note is None:
            return
        self._noted = True
        self._note(
            f"{self.results_path} began with one target and goes on with the first only (#{result.target_id}); "
            "record again, or to .jsonl, to save every target"
        )

    def _stop_results(self, err: OSError) -> None:
        file, self._results_file = self._results_file, None
        # What would not go out cannot go out on close either; the first error is the one to report.
        with contextlib.suppress(OSError):
            file.close()
        self._fail(self.results_path, err)

    # -- video -----------------------------------------------------------------------------------------------

    def _write_video(self, annotated: np.ndarray) -> None:
        frame = _bgr(annotated)
        if self._video is None:
            self._open_video(frame.shape[1], frame.shape[0])
            if self._video is None:
                return
        if (frame.shape[1], frame.shape[0]) != self._video_size:
            # A video has one frame size; a source that changes size mid-stream is fitted to the first.
            frame = cv2.resize(frame, self._video_size, interpolation=cv2.INTER_AREA)
        try:
            self._video.write(frame)
        except cv2.error as err:
            self._stop_video(str(err).strip().splitlines()[-1] if str(err).strip() else "encoder error")
            return
        self.video_frames += 1

    def _open_video(self, width: int, height: int) -> None:
        codec = VIDEO_CODECS[self.video_path.suffix.lower()]
        writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*codec), self.fps, (width, height))
        if not writer.isOpened():
            writer.release()
            self._stop_video(f"OpenCV cannot encode {codec} video of {width}x{height} there")
            return
        self._video = writer
        self._video_size = (width, height)

    def _stop_video(self, reason: str) -> None:
        video, self._video = self._video, None
        if video is not None:
            video.release()
        self._video_failed = True
        self._set_error(f"video recording to {self.video_path} stopped: {reason}; tracking goes on")

    # -- errors ----------------------------------------------------------------------------------------------

    def _fail(self, path: Path | None, err: OSError) -> None:
        self._set_error(f"recording to {path} stopped: {_os_reason(err)}; tracking goes on")

    def _set_error(self, message: str) -> None:
        if self._error is None:  # the first failure is the cause; later ones follow from it
            self._error = message


def text_line(box: Box | None) -> str:
    """``x,y,w,h`` for the results text file; ``nan,nan,nan,nan`` when there is no box."""
    if box is None or not box.is_finite():
        return NAN_LINE
    return ",".join(_number(v) for v in box.as_list())


def mot_lines(result: SessionResult) -> list[str]:
    """``frame,id,x,y,w,h,score`` per followed target, frame counted from 1; ``nan`` for a lost target's box."""
    return [_mot_line(result.frame_index + 1, target) for target in followed(result)]


def _mot_line(frame: int, target: TargetResult) -> str:
    score = _number(target.score, SCORE_DECIMALS) if math.isfinite(target.score) else "nan"
    return f"{frame},{target.target_id},{text_line(target.box)},{score}"


def _json_record(
    base: dict[str, object], box: Box | None, score: float, state: str, target_id: int | None, query: str | None
) -> str:
    shown = box if box is not None and box.is_finite() else None
    record = {
        **base,
        "box": None if shown is None else [round(v, BOX_DECIMALS) for v in shown.as_list()],
        "score": round(score, SCORE_DECIMALS) if math.isfinite(score) else None,
        "state": state,
        "id": target_id,
        "query": query,
    }
    return json.dumps(record, allow_nan=False)


def check_output_path(path: Path, what: str) -> None:
    """Raise ``RecordingError`` (one line) unless a file can be created at ``path``; creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise RecordingError(f"{what} path {path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise RecordingError(f"cannot write {what} to {path}: folder {folder} does not exist; create it first")
    try:
        # os.access is not enough (root, network mounts, read-only file systems): really create a file.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as err:
        raise RecordingError(f"cannot write {what} to {path}: {_os_reason(err)}; choose another folder") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise RecordingError(f"cannot write {what} to {path}: the file is read-only; choose another name")


def check_outputs_apart(outputs: list[Path | None], source: str | None) -> None:
    """Raise ``RecordingError`` when two outputs name the same file, or an output is the source file itself
    (writing it would destroy the video being read)."""
    paths = [Path(p) for p in outputs if p is not None]
    for i, path in enumerate(paths):
        for other in paths[:i]:
            if _same_file(path, other):
                raise RecordingError(f"results and video both go to {path}; give them different names")
    if source is None or not Path(source).expanduser().is_file():
        return
    for path in paths:
        if _same_file(path, Path(source).expanduser()):
            raise RecordingError(f"output {path} is the source being tracked; choose another name, not to lose it")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)  # also through links
    return a.expanduser().resolve() == b.expanduser().resolve()


def check_video_path(path: Path) -> None:
    """``check_output_path`` plus a known video container."""
    if Path(path).suffix.lower() not in VIDEO_CODECS:
        known = ", ".join(VIDEO_CODECS)
        raise RecordingError(f"cannot write video {path}: unknown video format; use one of {known}")
    check_output_path(path, "video")


def _open_text(path: Path) -> TextIO:
    try:
        return open(path, "w", encoding="utf-8", newline="\n")  # closed in Recorder.close
    except OSError as err:
        raise RecordingError(f"cannot write results to {path}: {_os_reason(err)}; choose another path") from None


def _number(value: float, decimals: int = BOX_DECIMALS) -> str:
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _os_reason(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "the disk is full"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    return err.strerror or str(err) or type(err).__name__


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)

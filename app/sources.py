"""Opening a frame source from what the user typed: a webcam index, a file, an image folder or a stream URL.

Two delivery policies, chosen by the kind of source:

- files and image folders deliver every frame in order through a small bounded queue; the capture thread
  waits when the queue is full, so nothing is dropped (``realtime=True`` paces delivery at the file's rate);
- webcams and stream URLs keep only the newest frame in a one-slot buffer: a frame nobody took before the next
  one arrived is replaced and counted as dropped, so the tracker always works on the present. A live source
  that stops delivering is reopened with exponential back-off.

The kinds are in ``app.file_sources`` and ``app.live_source``; what they share in ``app.frame_source``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cv2

from app.file_sources import FolderSource, VideoFileSource
from app.frame_source import CaptureFactory, FrameSource, create_capture, release_quietly
from app.live_source import LiveSource
from tracker.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https")
OPEN_TIMEOUT_MS = 5000  # an unreachable stream URL fails after this instead of hanging
READ_TIMEOUT_MS = 5000

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_source(
    spec: str,
    *,
    realtime: bool = False,
    capture_factory: CaptureFactory | None = None,
    reconnect: bool = True,
) -> FrameSource:
    """Open a source: ``"webcam"`` (index 0), a webcam index (``"1"``), a video file, a folder of images
    (sorted by name) or an rtsp/rtsps/http/https URL. Raises ``InputError`` with one line when it cannot be
    used. Call ``start()`` (or use it as a context manager) to begin capturing."""
    text = str(spec).strip()
    factory = capture_factory or default_capture
    if text.lower() == "webcam" or (text.isascii() and text.isdigit()):
        index = 0 if text.lower() == "webcam" else int(text)
        return _open_live(index, factory, reconnect, f"webcam {index}", "check that a camera is connected and free")
    scheme = _SCHEME.match(text)
    if scheme:
        if scheme.group(1).lower() not in LIVE_SCHEMES:
            raise InputError(
                f"unsupported URL scheme '{scheme.group(1)}://' in source {text}; use rtsp://, rtsps://, "
                "http:// or https:// (or a local file path without a scheme)"
            )
        return _open_live(text, factory, reconnect, _redacted(text), "check the address and that the stream is up")
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(
            f"source {text} does not exist; give a video file, an image folder, a webcam index or an rtsp/http URL"
        )
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return _open_folder(path, realtime)
    return _open_video(path, factory, realtime)


def default_capture(target: Any) -> Any:
    """``cv2.VideoCapture`` for a device index, file or URL; URLs get open/read timeouts: never a hang."""
    if isinstance(target, str) and _SCHEME.match(target):
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            OPEN_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            READ_TIMEOUT_MS,
        ]
        return cv2.VideoCapture(target, cv2.CAP_ANY, params)
    return cv2.VideoCapture(target)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (natural order for zero-padded numbering)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _open_folder(path: Path, realtime: bool) -> FrameSource:
    files = list_images(path) if path.is_dir() else [path]
    if not files:
        suffixes = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise InputError(f"folder {path} has no images ({suffixes}); give a folder of frames or a video file")
    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise InputError(f"cannot read image {files[0]}; it is damaged or not an image")
    return FolderSource(path, files, first, realtime)


def _open_video(path: Path, factory: CaptureFactory, realtime: bool) -> FrameSource:
    # Absolute, so FFmpeg reads a file: a relative name such as 'concat:a.mp4|b.mp4' or 'http:x' would otherwise
    # be taken as one of its protocols, and paths are never URLs here.
    capture = create_capture(factory, str(path.absolute()))
    if capture is None or not capture.isOpened():
        release_quietly(capture)
        raise InputError(f"cannot open {path} as a video; check that it is a video file OpenCV can decode")
    ok, first = capture.read()
    if not ok or first is None:
        release_quietly(capture)
        raise InputError(f"{path} contains no readable frame; check that it is a complete video file")
    return VideoFileSource(path, capture, first, realtime)


def _open_live(target: Any, factory: CaptureFactory, reconnect: bool, description: str, hint: str) -> FrameSource:
    capture = create_capture(factory, target)
    if capture is None or not capture.isOpened():
        release_quietly(capture)
        raise InputError(f"cannot open {description}; {hint}")
    return LiveSource(target, capture, factory, reconnect, description)


def _redacted(url: str) -> str:
    """The URL without user:password, for titles and messages."""
    return re.sub(r"://[^/@]*@", "://", url)

"""Frame sources: files in order without drops, folders sorted, live newest-frame with drop counting,
reconnect after an unplug, clear errors, and no capture thread left behind."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from app import file_sources, live_source, sources
from app.frame_source import SourceStats
from app.sources import open_source
from tests.helpers import CONFORMANCE
from tracker.errors import InputError

LEVEL_STEP = 6  # frame i of a synthetic video is filled with grey level i * LEVEL_STEP


def write_level_video(path, frames: int, fps: float = 25.0, size=(64, 48)):
    """A small MJPG video whose frame i is a flat grey of level i * LEVEL_STEP (survives compression)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), i * LEVEL_STEP, np.uint8))
    writer.release()
    return path


def level_of(image: np.ndarray) -> int:
    return round(float(image.mean()) / LEVEL_STEP)


def drain(source, limit_s: float = 20.0):
    """Every frame until the source ends."""
    frames, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        frame = source.read(0.2)
        if frame is not None:
            frames.append(frame)
        elif source.ended:
            return frames
    raise AssertionError("source did not end in time")


def capture_threads():
    return [t for t in threading.enumerate() if t.name.startswith("capture ") and t.is_alive()]


def wait_for(predicate, limit_s: float = 5.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


class FakeCamera:
    """A camera that can be unplugged and plugged back; ``factory`` is what open_source calls."""

    def __init__(self, size=(32, 24), period_s: float = 0.001) -> None:
        self.size = size
        self.period_s = period_s
        self.plugged = threading.Event()
        self.plugged.set()
        self.opened_with: list[object] = []
        self.open_times: list[float] = []
        self.counter = 0

    def factory(self, target):
        self.opened_with.append(target)
        self.open_times.append(time.monotonic())
        return FakeCapture(self)


class FakeCapture:
    def __init__(self, camera: FakeCamera) -> None:
        self.camera = camera
        self.open = camera.plugged.is_set()

    def isOpened(self) -> bool:  # the cv2.VideoCapture name
        return self.open

    def read(self):
        if not (self.open and self.camera.plugged.is_set()):
            self.open = False
            return False, None
        time.sleep(self.camera.period_s)
        self.camera.counter += 1
        width, height = self.camera.size
        return True, np.full((height, width, 3), self.camera.counter % 256, np.uint8)

    def get(self, prop) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.open = False


# -- files and folders ---------------------------------------------------------------------------------------


def test_video_file_delivers_every_frame_in_order_even_to_a_slow_reader(tmp_path):
    path = write_level_video(tmp_path / "clip.avi", 24)
    with open_source(str(path)) as source:
        assert not source.is_live and source.nominal_fps == pytest.approx(25.0) and source.frame_count == 24
        time.sleep(0.3)  # the capture thread fills its bounded queue and must wait, not drop
        frames = drain(source)
        stats = source.stats()
    assert [f.index for f in frames] == list(range(24))
    assert [level_of(f.image) for f in frames] == list(range(24))
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    timestamps = [f.timestamp for f in frames]
    assert timestamps == sorted(timestamps)
    assert (stats.captured, stats.dropped, stats.status) == (24, 0, "ended")
    assert source.read(0.01) is None and source.ended


def test_realtime_file_is_paced_at_its_frame_rate(tmp_path):
    path = write_level_video(tmp_path / "clip.avi", 10, fps=20.0)
    begin = time.monotonic()
    with open_source(str(path), realtime=True) as source:
        frames = drain(source)
    assert len(frames) == 10
    assert time.monotonic() - begin >= 9 / 20.0 * 0.9  # 10 frames at 20 fps span 0.45 s
    assert frames[-1].timestamp - frames[0].timestamp >= 9 / 20.0 * 0.9


def test_folder_is_read_in_name_order_and_grey_images_become_bgr(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    # Written out of order, with mixed suffixes, a grey picture and a file that is not an image.
    for name, level in (("0003.png", 3), ("0001.jpg", 1), ("0002.bmp", 2), ("0000.png", 0)):
        image = np.full((20, 30), level * 40, np.uint8)
        cv2.imwrite(str(folder / name), image if name != "0002.bmp" else cv2.merge([image] * 3))
    (folder / "notes.txt").write_text("not a frame")
    with open_source(str(folder)) as source:
        assert source.frame_count == 4
        frames = drain(source)
    assert [round(float(f.image.mean()) / 40) for f in frames] == [0, 1, 2, 3]
    assert all(f.image.shape == (20, 30, 3) for f in frames)
    assert [f.index for f in frames] == [0, 1, 2, 3]


def test_real_grey_sequence_folder(tmp_path):
    folder = CONFORMANCE / "sequence" / "Dudek20" / "img"
    with open_source(str(folder)) as source:
        frames = drain(source)
    assert len(frames) == 20 and all(f.image.shape == (480, 720, 3) for f in frames)


def test_unreadable_image_inside_a_folder_is_skipped_and_reported(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((8, 8, 3), 50 * i, np.uint8))
    (tmp_path / "01b.png").write_bytes(b"broken")
    with open_source(str(tmp_path)) as source:
        frames = drain(source)
        stats = source.stats()
    assert [f.index for f in frames] == [0, 1, 2]
    assert "skipped 1 unreadable" in stats.message


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: str(p / "missing.mp4"), "does not exist"),
        (lambda p: str(p), "has no images"),
        (lambda p: _write(p / "fake.mp4", b"this is not a video at all" * 10), "cannot open"),
        (lambda p: _write(p / "empty.avi", b""), "cannot open"),
        (lambda p: "ftp://example.org/clip.mp4", "unsupported URL scheme 'ftp://'"),
        (lambda p: "file:///tmp/clip.mp4", "unsupported URL scheme 'file://'"),
    ],
)
def test_unusable_sources_are_one_line_input_errors(tmp_path, make, expected):
    with pytest.raises(InputError) as info:
        open_source(make(tmp_path))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert not capture_threads()


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_unreachable_stream_url_fails_fast_instead_of_hanging():
    begin = time.monotonic()
    with pytest.raises(InputError, match=r"cannot open rtsp://127\.0\.0\.1:9/stream"):
        open_source("rtsp://127.0.0.1:9/stream")  # loopback, closed port: refused at once
    assert time.monotonic() - begin < sources.OPEN_TIMEOUT_MS / 1000 + 2


def test_url_credentials_are_not_shown(tmp_path):
    camera = FakeCamera()
    source = open_source("rtsp://user:secret@127.0.0.1/cam", capture_factory=camera.factory)
    try:
        assert camera.opened_with == ["rtsp://user:secret@127.0.0.1/cam"]
        assert "secret" not in source.description
    finally:
        source.close()


# -- live ----------------------------------------------------------------------------------------------------


def test_webcam_specs_open_device_indexes():
    camera = FakeCamera()
    for spec in ("webcam", "2"):
        open_source(spec, capture_factory=camera.factory).close()
    assert camera.opened_with == [0, 2]


def test_webcam_that_cannot_open_is_an_input_error():
    camera = FakeCamera()
    camera.plugged.clear()
    with pytest.raises(InputError, match="cannot open webcam 0"):
        open_source("webcam", capture_factory=camera.factory)


def test_live_source_keeps_only_the_newest_frame_and_counts_drops():
    camera = FakeCamera(period_s=0.002)
    delivered = []
    with open_source("0", capture_factory=camera.factory) as source:
        assert source.is_live
        for _ in range(5):
            time.sleep(0.05)  # a slow consumer: about 25 frames arrive between two reads
            frame = source.read(1.0)
            assert frame is not None
            delivered.append(frame)
        assert source.read(0.0) is None  # the slot was emptied by the last read (or holds one new frame)
        stats = source.stats()
    indexes = [f.index for f in delivered]
    assert indexes == sorted(set(indexes))
    assert indexes[-1] - indexes[0] > len(indexes)  # frames were skipped between reads: newest only
    assert stats.dropped > 0
    # Every captured frame was delivered, dropped, or is the one frame still waiting in the slot.
    assert stats.captured - len(delivered) - stats.dropped in (0, 1, 2)
    assert stats.fps > 0


class WaitLog(threading.Event):
    """A stop event that records every back-off wait the capture thread asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return super().wait(timeout)


def test_live_source_reconnects_with_growing_back_off_after_an_unplug(monkeypatch):
    monkeypatch.setattr(live_source, "BACKOFF_FIRST_S", 0.05)
    monkeypatch.setattr(live_source, "BACKOFF_MAX_S", 0.2)
    camera = FakeCamera()
    source = open_source("webcam", capture_factory=camera.factory)
    source._stop = log = WaitLog()
    with source:
        before = [source.read(1.0) for _ in range(3)]
        assert all(f is not None for f in before)
        camera.plugged.clear()
        assert wait_for(lambda: source.stats().status == "reconnecting")
        assert "reconnecting in" in source.stats().message
        assert wait_for(lambda: len(camera.open_times) >= 5)  # the first open and four failed reopens
        camera.plugged.set()
        assert wait_for(lambda: source.stats().status == "running" and source.stats().reconnects == 1)
        after = source.read(1.0)
        while after is not None and after.index <= before[-1].index:
            after = source.read(1.0)
        assert not source.ended
    assert after is not None and after.index > before[-1].index  # indexes go on after the gap
    assert log.waits[:4] == [0.05, 0.1, 0.2, 0.2]  # doubling, capped at BACKOFF_MAX_S
    gaps = np.diff(camera.open_times[1:5])  # between failed reopen attempts: the waits really happen
    assert gaps[0] >= 0.1 * 0.9 and gaps[1] >= 0.2 * 0.9


def test_live_source_without_reconnect_fails_for_good():
    camera = FakeCamera()
    with open_source("webcam", capture_factory=camera.factory, reconnect=False) as source:
        assert source.read(1.0) is not None
        camera.plugged.clear()
        # The last frame captured before the failure is still delivered; then the source has ended.
        assert wait_for(lambda: source.read(0.01) is None and source.ended)
        stats = source.stats()
    assert stats.status == "failed" and "stopped delivering" in stats.message


def test_stats_is_a_frozen_snapshot():
    stats = SourceStats(captured=1, dropped=0, fps=0.0, status="running")
    with pytest.raises(AttributeError):
        stats.captured = 2  # type: ignore[misc]


# -- threads -------------------------------------------------------------------------------------------------


def test_close_joins_the_capture_thread_even_when_the_queue_is_full(tmp_path):
    path = write_level_video(tmp_path / "clip.avi", 40)
    source = open_source(str(path))
    source.start()
    assert wait_for(lambda: source.stats().captured >= file_sources.FILE_QUEUE_FRAMES)
    assert capture_threads()
    source.close()  # the thread is blocked on a full queue: close must still end it
    source.close()  # idempotent
    assert not capture_threads()
    assert source.read(0.01) is None and source.ended


def test_close_joins_a_live_thread_and_releases_the_device():
    camera = FakeCamera()
    source = open_source("webcam", capture_factory=camera.factory)
    source.start()
    assert source.read(1.0) is not None
    source.close()
    assert not capture_threads()
    assert source.ended and source.read(0.01) is None


def test_close_without_start_releases_the_capture():
    camera = FakeCamera()
    released = []
    original = FakeCapture.release

    def spy(self):
        released.append(self)
        original(self)

    FakeCapture.release = spy
    try:
        open_source("webcam", capture_factory=camera.factory).close()
    finally:
        FakeCapture.release = original
    assert len(released) == 1 and not capture_threads()


class ExplodingCapture(FakeCapture):
    """A backend that raises something unexpected after a few frames."""

    def read(self):
        if self.camera.counter >= 3:
            raise RuntimeError("driver exploded")
        return super().read()


@pytest.mark.parametrize("live", [True, False])
def test_a_capture_thread_that_crashes_ends_the_source_with_a_message(tmp_path, live):
    camera = FakeCamera()
    factory = lambda target: ExplodingCapture(camera)  # noqa: E731
    spec = "webcam" if live else str(_write(tmp_path / "clip.avi", b"x"))
    with open_source(spec, capture_factory=factory, reconnect=False) as source:
        frames = drain(source, limit_s=5.0)
        stats = source.stats()
    assert len(frames) >= 1 if live else [f.index for f in frames] == [0, 1, 2]
    assert stats.status == "failed" and "driver exploded" in stats.message
    assert not capture_threads()

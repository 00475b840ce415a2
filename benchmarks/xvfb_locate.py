"""Where to drag in a screenshot of the window: find the video on screen and the person in it.

Used by ``benchmarks/xvfb_drag.sh``, which drives the real window like a person does: it looks at the screen.
The screenshot is of the paused window; this finds the video area (the letterbox bars have the view's own
background colour), recognises which frame of the video is on display (nearest frame by pixel difference) and
prints where that frame's ground-truth box is, in window pixels:

    python benchmarks/xvfb_locate.py shot.png video.mp4 groundtruth.txt   ->   x1 y1 x2 y2 frame_index
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from app.video_view import BACKGROUND, Viewport
from tracker import Box


def video_area(screenshot: np.ndarray) -> tuple[int, int, int, int]:
    """The video widget (x, y, w, h) in window pixels: where its background colour (the bars) reaches."""
    background_bgr = np.array([BACKGROUND.blue(), BACKGROUND.green(), BACKGROUND.red()], np.uint8)
    ys, xs = np.nonzero(np.all(screenshot == background_bgr, axis=2))
    if len(xs) == 0:
        raise SystemExit("no letterbox bars found in the screenshot; is the video window showing a frame?")
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def displayed_frame(picture: np.ndarray, video: str) -> int:
    """Index of the video frame most like ``picture`` (already resized to the video's frame size)."""
    capture = cv2.VideoCapture(video)
    target = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY).astype(np.float32)
    best, best_error, index = -1, float("inf"), 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        error = float(np.mean((cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32) - target) ** 2))
        if error < best_error:
            best, best_error = index, error
        index += 1
    capture.release()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("screenshot")
    parser.add_argument("video")
    parser.add_argument("groundtruth")
    args = parser.parse_args()
    shot = cv2.imread(args.screenshot, cv2.IMREAD_COLOR)
    capture = cv2.VideoCapture(args.video)
    frame_w, frame_h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    capture.release()
    left, top, width, height = video_area(shot)
    viewport = Viewport.fit(frame_w, frame_h, width, height)
    x0, y0 = round(left + viewport.left), round(top + viewport.top)
    shown = shot[y0 : y0 + round(viewport.height), x0 : x0 + round(viewport.width)]
    index = displayed_frame(cv2.resize(shown, (frame_w, frame_h), interpolation=cv2.INTER_AREA), args.video)
    line = Path(args.groundtruth).read_text(encoding="utf-8").splitlines()[index]
    box = Box.from_xywh(line.replace("\t", ",").split(","))
    x1, y1 = viewport.to_widget(box.x, box.y)
    x2, y2 = viewport.to_widget(box.x + box.w, box.y + box.h)
    print(round(left + x1), round(top + y1), round(left + x2), round(top + y2), index)
    print(f"video area {width}x{height} at {left},{top}; frame {index}; box {box.as_list()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

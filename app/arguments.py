"""The command line's flags: the parser with its help and examples, and the flags turned into ``AppOptions``
with one-line errors for values argparse cannot judge."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from app.options import AppOptions
from tracker.accel import BACKENDS, PRECISIONS
from tracker.errors import InputError
from tracker.types import Box

DEVICES = ("auto", "cpu", "cuda")

EXAMPLES = """\
examples:
  track a video without a window, starting from a box, and save the boxes:
    python main.py --no-gui --source clip.mp4 --init-box 120,80,60,90 --save-results boxes.txt
  follow two targets (one --init-box each), saved as MOTChallenge-style lines:
    python main.py --no-gui --source clip.mp4 --init-box 120,80,60,90 --init-box 300,95,40,80 --save-results mot.txt
  the same on a folder of frames with JSON lines and an annotated video, first 500 frames:
    python main.py --no-gui --source frames/ --init-box 120,80,60,90 \\
        --save-results boxes.jsonl --save-video tracked.mp4 --max-frames 500
  open the window on the default webcam (draw a box with the mouse to start; Shift+drag adds another target):
    python main.py
  a network camera with an official OSTrack checkpoint on the GPU:
    python main.py --source rtsp://camera.local/stream --weights weights/OSTrack_ep0300.pth.tar --device cuda

results files:
  .txt (or any name not ending in .jsonl), one target: one "x,y,w,h" line per frame read, in frame pixels; the
  first line is the initial box. Frames with no box (in the window: before a box is drawn or after a reset; or
  while the target is lost) are written "nan,nan,nan,nan", so line n is always frame n.
  .txt, several targets (several --init-box, or several followed when recording starts): MOTChallenge-style
  "frame,id,x,y,w,h,score" lines, one per target per frame, frames counted from 1; a lost target's x,y,w,h
  are nan. The layout is chosen on the first frame: targets added later go to .jsonl files only.
  .jsonl: one {"frame", "time", "box", "score", "state", "id", "query"} object per target per frame read
  (one per frame with one target); "frame" counts from 0, "time" is seconds since the first frame, "box" is
  [x, y, w, h], or null while idle or while that target is lost ("state": "lost").

exit codes: 0 done, 1 unexpected failure (run with --debug), 2 bad input, model or output, or no window can open
(the message says why), 130 stopped by Ctrl-C, 143 stopped by SIGTERM (results and video are complete up to the
last frame tracked)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="Real-time visual object tracking with an OSTrack one-stream ViT: a window, or headless.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--source",
        default="webcam",
        metavar="PATH_OR_INDEX_OR_URL",
        help="what to track in: 'webcam' (camera 0), a camera index such as 1, a video file, a folder of "
        "images (sorted by name), or an rtsp://, rtsps://, http:// or https:// stream (default: webcam)",
    )
    add(
        "--init-box",
        action="append",
        metavar="X,Y,W,H",
        help="the target on the first frame: top-left x, y, width, height in frame pixels, e.g. 120,80,60,90 "
        "(required with --no-gui unless --query; in the window you can draw it instead). Give it again for each "
        "further target to follow; ids count from 1 in the order given",
    )
    add("--no-gui", action="store_true", help="run without a window: track, record, print a summary, exit")
    add(
        "--save-results",
        metavar="PATH",
        help="write the box of every frame to PATH: .txt gives x,y,w,h lines, .jsonl gives JSON lines with "
        "state and score (see 'results files' below)",
    )
    add(
        "--save-video",
        metavar="PATH",
        help="write the annotated frames (box, state, trail, speed) to a .mp4 or .avi video",
    )
    add(
        "--config",
        metavar="NAME_OR_YAML",
        help="model config: a name from configs/ such as ostrack_vitb256_ce, or a YAML file "
        "(default: the one stored with the weights)",
    )
    add(
        "--weights",
        metavar="PATH",
        help="model weights: an official OSTrack .pth.tar checkpoint or our .safetensors (default: the bundled model)",
    )
    add(
        "--device",
        default="auto",
        metavar="cpu|cuda|auto",
        help="where the model runs (default: auto = cuda when a GPU is available, else cpu)",
    )
    add(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="inference path (default: auto = the fastest that keeps the tracks: onnx on CPU, cudagraph fp16 on "
        "GPU). eager float32 is the reference; int8 and bf16 are approximate; cudagraph and tensorrt need a GPU",
    )
    add(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="number format (default: auto = fp32 on CPU, fp16 on GPU where the backend supports it)",
    )
    add("--max-frames", metavar="N", help="stop after N frames (default: until the source ends or Ctrl-C)")
    add(
        "--query",
        metavar="TEXT",
        help='find the target by a description, e.g. "the red car" (needs the grounding model)',
    )
    add(
        "--grounding-weights",
        metavar="PATH",
        help="the grounding model for --query and typed queries: a file in weights/ by name, e.g. "
        "grounding_small_v3.safetensors, or a path (default: the bundled grounding model)",
    )
    add("--debug", action="store_true", help="show full tracebacks and OpenCV/FFmpeg messages")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags in ``argv``; exits (as argparse does) on an unknown flag or ``--help``."""
    return build_parser().parse_args(_attach_box_values(argv))


def _attach_box_values(argv: list[str]) -> list[str]:
    """``--init-box -20,5,40,30`` as ``--init-box=-20,5,40,30``: argparse would take a value starting with '-' for
    a flag, and a box partly left of or above the frame starts with one."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] == "--init-box" and re.match(r"^-[\d.]", arg):
            joined[-1] = f"--init-box={arg}"
        else:
            joined.append(arg)
    return joined


def options_from_args(args: argparse.Namespace) -> AppOptions:
    """Validate the flags that need more than argparse gives, with one-line errors."""
    boxes = [parse_box(text) for text in args.init_box or ()]
    return AppOptions(
        source=args.source,
        init_box=boxes[0] if boxes else None,
        more_boxes=tuple(boxes[1:]),
        config=args.config,
        weights=args.weights,
        device=_parse_device(args.device),
        backend=args.backend,
        precision=args.precision,
        save_results=Path(args.save_results).expanduser() if args.save_results else None,
        save_video=Path(args.save_video).expanduser() if args.save_video else None,
        max_frames=_parse_max_frames(args.max_frames) if args.max_frames is not None else None,
        query=_parse_query(args.query) if args.query is not None else None,
        grounding_weights=args.grounding_weights,
        debug=args.debug,
    )


def parse_box(text: str) -> Box:
    """``x,y,w,h`` (four finite numbers, positive width and height) in frame pixels."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InputError(f"--init-box '{text}' is not four numbers x,y,w,h; give e.g. --init-box 120,80,60,90")
    box = Box.from_xywh(values)
    if box.w <= 0 or box.h <= 0:
        raise InputError(f"--init-box '{text}' has zero or negative width or height; give a box of size above 0")
    return box


def _parse_query(text: str) -> str:
    query = " ".join(text.split())
    if not query:
        raise InputError('--query is empty; describe the target, e.g. --query "the red car", or leave --query out')
    return query


def _parse_device(text: str) -> str:
    name = text.strip().lower()
    if name in DEVICES or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise InputError(f"--device '{text}' is not one of cpu, cuda, auto (or cuda:N)")


def _parse_max_frames(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(f"--max-frames '{text}' is not a positive whole number; give e.g. --max-frames 500")
    return value

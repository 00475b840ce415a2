"""Training data readers: GOT-10k, LaSOT, TrackingNet, COCO and our own layouts, behind two small types.

A video dataset becomes ``TrackSequence`` values (boxes, visibility, a frame reader); a photo dataset becomes
``StillImage`` values (one photo, every labelled box). Boxes are (x, y, w, h) in frame pixels, top-left
origin. Frames come back as (H, W, 3) uint8 RGB. Readers only list files and parse annotations; pixels are
read when a sample needs them, except our ``video.mp4`` files, which are decoded once into a cache of ``.npy``
arrays that every data worker memory-maps (decoding H.264 per sample would bind training to the decoder).

Readers are looked up by the names used in ``DATA.TRAIN.DATASETS_NAME`` (see ``READERS``); the path of each
dataset is given on the command line (``--data NAME=PATH``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import InputError

DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[2] / "runs" / "cache" / "frames"  # runs/ is gitignored


# ----------------------------------------------------------------------------------------------------
# What readers return


class FrameReader:
    """Reads frame ``i`` of one sequence as (H, W, 3) uint8 RGB."""

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, index: int) -> np.ndarray:
        raise NotImplementedError


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {path}; check that the file exists and is a JPEG or PNG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class ImageFolderFrames(FrameReader):
    """One image file per frame (GOT-10k, LaSOT, TrackingNet)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> np.ndarray:
        return read_rgb(self.paths[index])


class CachedVideoFrames(FrameReader):
    """Frames of a video file, decoded once into ``cache_dir`` and memory-mapped from there.

    The cache file name carries a digest of the video's path, size and modification time, so an edited video
    is decoded again. The memory map is opened lazily in each process and never pickled (each worker opens its
    own).
    """

    def __init__(self, video: Path, num_frames: int, cache_dir: Path) -> None:
        self.video = Path(video)
        self.num_frames = num_frames
        self.cache_dir = Path(cache_dir)
        self._frames: np.ndarray | None = None

    def __len__(self) -> int:
        return self.num_frames

    @property
    def cache_file(self) -> Path:
        stat = self.video.stat()
        key = f"{self.video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return self.cache_dir / f"{self.video.parent.name}-{digest}.npy"

    def ensure_cached(self) -> Path:
        """Decode the video into the cache unless it is there already; returns the cache file."""
        target = self.cache_file
        if not target.is_file():
            decode_video_to_npy(self.video, target, self.num_frames)
        return target

    def read(self, index: int) -> np.ndarray:
        if self._frames is None:
            self._frames = np.load(self.ensure_cached(), mmap_mode="r")
        return np.array(self._frames[index])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_frames": None}


def decode_video_to_npy(video: Path, target: Path, expected_frames: int) -> None:
    """Decode every frame of ``video`` as RGB into one (N, H, W, 3) ``.npy`` file, written atomically."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise InputError(f"cannot open video {video}; check the file (H.264 .mp4 expected)")
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if len(frames) != expected_frames:
        raise InputError(
            f"{video} decodes to {len(frames)} frames but its groundtruth.txt has {expected_frames} lines; "
            "fix the annotation or the video"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial.npy")
    np.save(partial, np.stack(frames))
    os.replace(partial, target)  # atomic: concurrent ranks never read a half-written cache file


@dataclass(frozen=True, eq=False)
class TrackSequence:
    """A training video: ``boxes`` (N, 4) float64 x, y, w, h in frame pixels, ``visible`` (N,) bool."""

    name: str
    boxes: np.ndarray
    visible: np.ndarray
    frames: FrameReader

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True, eq=False)
class StillImage:
    """A photo and every labelled box in it (K, 4) as x, y, w, h in pixels; each box can be the target."""

    path: Path
    boxes: np.ndarray
    labels: tuple[str, ...] = ()

    def read(self) -> np.ndarray:
        return read_rgb(self.path)


@dataclass(frozen=True, eq=False)
class TrainingSource:
    """One named dataset: video sequences or still photos (one of the two is empty)."""

    name: str
    sequences: tuple[TrackSequence, ...] = ()
    stills: tuple[StillImage, ...] = ()
    root: str = ""
    targets: tuple[tuple[int, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        # Still photos are sampled per labelled box (as OSTrack samples COCO per annotation), not per photo.
        pairs = tuple((i, k) for i, still in enumerate(self.stills) for k in range(len(still.boxes)))
        object.__setattr__(self, "targets", pairs)

    @property
    def is_video(self) -> bool:
        return bool(self.sequences)

    def describe(self) -> str:
        if self.is_video:
            return f"{self.name}: {len(self.sequences)} sequences, {sum(len(s) for s in self.sequences)} frames"
        return f"{self.name}: {len(self.stills)} images, {len(self.targets)} boxes"


# ----------------------------------------------------------------------------------------------------
# Annotation parsing shared by the readers


def read_box_file(path: Path) -> np.ndarray:
    """An (N, 4) array from a text file with one ``x,y,w,h`` line per frame (commas, tabs or spaces)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        raise InputError(f"cannot read box file {path}; check the dataset layout") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.replace(",", " ").replace("\t", " ").split()
        try:
            values = [float(v) for v in parts[:4]]
        except ValueError:
            values = []
        if len(values) != 4:
            raise InputError(f"{path}:{number} is not an 'x,y,w,h' line; fix the annotation")
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def read_flags(path: Path, count: int) -> np.ndarray | None:
    """Per-frame integer flags (one per line, or one comma-separated line); None without such a file."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8").replace(",", " ").split()
    flags = np.asarray([int(float(v)) for v in text], dtype=np.int64)
    if len(flags) != count:
        raise InputError(f"{path} has {len(flags)} flags for {count} frames; fix the annotation")
    return flags


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """Frames whose box is finite and has positive width and height."""
    finite = np.isfinite(boxes).all(axis=1)
    return finite & (np.nan_to_num(boxes[:, 2]) > 0) & (np.nan_to_num(boxes[:, 3]) > 0)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputError(f"{what} folder {path} does not exist; check the path given with --data")
    return path


def _sorted_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _check_frame_count(name: str, frames: Sequence[Path], boxes: np.ndarray) -> None:
    if len(frames) < len(boxes):
        raise InputError(f"sequence {name} has {len(boxes)} boxes but {len(frames)} frames; check the dataset")


# ----------------------------------------------------------------------------------------------------
# Our layouts


def read_ours_sequences(root: Path, cache_dir: Path = DEFAULT_CACHE_DIR) -> TrainingSource:
    """``root/<name>/video.mp4`` + ``groundtruth.txt`` (frame i is line i), or frames in ``<name>/img/``."""
    root = _require_dir(Path(root), "sequences")
    sequences = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        gt = folder / "groundtruth.txt"
        if not gt.is_file():
            continue
        boxes = read_box_file(gt)
        if (folder / "video.mp4").is_file():
            frames: FrameReader = CachedVideoFrames(folder / "video.mp4", len(boxes), cache_dir)
        else:
            paths = _sorted_images(_require_dir(folder / "img", "frames"))
            _check_frame_count(folder.name, paths, boxes)
            frames = ImageFolderFrames(paths[: len(boxes)])
        sequences.append(TrackSequence(folder.name, boxes, valid_boxes(boxes), frames))
    if not sequences:
        raise InputError(f"no sequences (folders with groundtruth.txt) in {root}; check the path given with --data")
    return TrainingSource("OURS_SEQ", tuple(sequences), root=str(root))


def read_ours_images(root: Path) -> TrainingSource:
    """``root/<set>/boxes.jsonl`` + ``images/`` (or ``root`` being one set): stills with labelled boxes."""
    root = _require_dir(Path(root), "images")
    index_files = [root / "boxes.jsonl"] if (root / "boxes.jsonl").is_file() else sorted(root.glob("*/boxes.jsonl"))
    stills = []
    for index in index_files:
        for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                boxes = np.asarray([b["xywh"] for b in entry["boxes"]], dtype=np.float64).reshape(-1, 4)
                labels = tuple(str(b.get("label", "")) for b in entry["boxes"])
                path = index.parent / entry["image"]
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{index}:{number} is not a boxes.jsonl entry; fix or remove the line") from None
            keep = valid_boxes(boxes)
            if keep.any():
                stills.append(
                    StillImage(path, boxes[keep], tuple(lab for lab, k in zip(labels, keep, strict=True) if k))
                )
    if not stills:
        raise InputError(f"no labelled images (boxes.jsonl) under {root}; check the path given with --data")
    return TrainingSource("OURS_IMG", stills=tuple(stills), root=str(root))


# ----------------------------------------------------------------------------------------------------
# Public benchmark layouts


def read_got10k(root: Path, split: str = "train") -> TrainingSource:
    """GOT-10k: ``root/list.txt`` (or every folder) of ``GOT-10k_Train_XXXXXX/`` with ``groundtruth.txt``,
    ``absence.label``, ``cover.label`` and ``00000001.jpg``... Splits other than ``train`` (e.g. ``vottrain``)
    need a list file in ``root``: ``<split>.txt`` or ``got10k_<split>_split.txt`` (names, or indices into the
    sorted sequence list, one per line), as OSTrack's data specs provide."""
    root = _require_dir(Path(root), "GOT-10k")
    if (root / "train").is_dir() and not (root / "list.txt").is_file():
        root = root / "train"
    names = _listed_or_all(root, root / "list.txt")
    if split != "train":
        names = _split_subset(root, names, split)
    sequences = []
    for name in names:
        folder = root / name
        boxes = read_box_file(folder / "groundtruth.txt")
        visible = valid_boxes(boxes)
        absent = read_flags(folder / "absence.label", len(boxes))
        cover = read_flags(folder / "cover.label", len(boxes))
        if absent is not None:
            visible &= absent == 0
        if cover is not None:
            visible &= cover > 0
        frames = _sorted_images(folder)
        _check_frame_count(name, frames, boxes)
        sequences.append(TrackSequence(name, boxes, visible, ImageFolderFrames(frames[: len(boxes)])))
    return TrainingSource(f"GOT10K_{split}", tuple(sequences), root=str(root))


def _listed_or_all(root: Path, list_file: Path) -> list[str]:
    if list_file.is_file():
        return [line.strip() for line in list_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted(p.name for p in root.iterdir() if (p / "groundtruth.txt").is_file())


def _split_subset(root: Path, names: list[str], split: str) -> list[str]:
    for candidate in (
        root / f"{split}.txt",
        root / f"got10k_{split}_split.txt",
        root.parent / f"{split}.txt",
    ):
        if candidate.is_file():
            entries = [line.strip() for line in candidate.read_text(encoding="utf-8").splitlines() if line.strip()]
            ordered = sorted(names)
            return [ordered[int(e)] if e.isdigit() else e for e in entries]
    raise InputError(f"GOT-10k split '{split}' needs a list file {root / (split + '.txt')}; add it or use GOT10K_train")


def read_lasot(root: Path) -> TrainingSource:
    """LaSOT: ``root/<class>/<class>-<n>/`` with ``groundtruth.txt``, ``full_occlusion.txt``,
    ``out_of_view.txt`` and ``img/00000001.jpg``... The training split is every sequence not named in
    ``root/testing_set.txt`` (or only those in ``root/training_set.txt`` when that file is there)."""
    root = _require_dir(Path(root), "LaSOT")
    folders = sorted(p.parent for p in root.glob("*/*/groundtruth.txt"))
    include, exclude = root / "training_set.txt", root / "testing_set.txt"
    if include.is_file():
        wanted = set(include.read_text(encoding="utf-8").split())
        folders = [f for f in folders if f.name in wanted]
    elif exclude.is_file():
        unwanted = set(exclude.read_text(encoding="utf-8").split())
        folders = [f for f in folders if f.name not in unwanted]
    sequences = []
    for folder in folders:
        boxes = read_box_file(folder / "groundtruth.txt")
        visible = valid_boxes(boxes)
        for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
            flags = read_flags(folder / flag_file, len(boxes))
            if flags is not None:
                visible &= flags == 0
        frames = _sorted_images(_require_dir(folder / "img", "LaSOT frames"))
        _check_frame_count(folder.name, frames, boxes)
        sequences.append(TrackSequence(folder.name, boxes, visible, ImageFolderFrames(frames[: len(boxes)])))
    if not sequences:
        raise InputError(f"no LaSOT sequences (<class>/<class>-<n>/groundtruth.txt) in {root}; check --data")
    return TrainingSource("LASOT", tuple(sequences), root=str(root))


def read_trackingnet(root: Path) -> TrainingSource:
    """TrackingNet: ``root/TRAIN_<k>/anno/<seq>.txt``, frames ``TRAIN_<k>/frames/<seq>/<i>.jpg`` (i >= 0)."""
    root = _require_dir(Path(root), "TrackingNet")
    chunks = sorted(p for p in root.glob("TRAIN_*") if (p / "anno").is_dir())
    sequences = []
    for chunk in chunks:
        for anno in sorted((chunk / "anno").glob("*.txt")):
            boxes = read_box_file(anno)
            folder = chunk / "frames" / anno.stem
            frames = [folder / f"{i}.jpg" for i in range(len(boxes))]
            sequences.append(
                TrackSequence(f"{chunk.name}/{anno.stem}", boxes, valid_boxes(boxes), ImageFolderFrames(frames))
            )
    if not sequences:
        raise InputError(f"no TrackingNet chunks (TRAIN_<k>/anno/*.txt) in {root}; check the path given with --data")
    return TrainingSource("TRACKINGNET", tuple(sequences), root=str(root))


def read_coco(root: Path, year: str = "2017") -> TrainingSource:
    """COCO: ``root/annotations/instances_train<year>.json`` with images in ``root/train<year>/`` (or
    ``root/images/train<year>/``). Crowd annotations are skipped; every other instance box can be a target."""
    root = _require_dir(Path(root), "COCO")
    ann_file = root / "annotations" / f"instances_train{year}.json"
    if not ann_file.is_file():
        raise InputError(f"COCO annotations {ann_file} not found; check the path given with --data")
    image_dir = root / f"train{year}"
    if not image_dir.is_dir():
        image_dir = _require_dir(root / "images" / f"train{year}", "COCO images")
    data = json.loads(ann_file.read_text(encoding="utf-8"))
    categories = {c["id"]: c.get("name", str(c["id"])) for c in data.get("categories", [])}
    per_image: dict[int, list[tuple[list[float], str]]] = {}
    for ann in data.get("annotations", []):
        if ann.get("iscrowd", 0):
            continue
        per_image.setdefault(ann["image_id"], []).append((ann["bbox"], categories.get(ann.get("category_id"), "")))
    stills = []
    for image in sorted(data.get("images", []), key=lambda im: im["id"]):
        entries = per_image.get(image["id"])
        if not entries:
            continue
        boxes = np.asarray([e[0] for e in entries], dtype=np.float64).reshape(-1, 4)
        keep = valid_boxes(boxes)
        if keep.any():
            labels = tuple(e[1] for e, k in zip(entries, keep, strict=True) if k)
            stills.append(StillImage(image_dir / image["file_name"], boxes[keep], labels))
    if not stills:
        raise InputError(f"{ann_file} lists no usable (non-crowd) boxes; check the file")
    return TrainingSource(f"COCO{year[2:]}", stills=tuple(stills), root=str(root))


# ----------------------------------------------------------------------------------------------------
# Name -> reader


# Every reader takes (root, cache_dir); only those that decode videos use the cache.
Reader = Callable[[Path, Path], TrainingSource]

READERS: dict[str, Reader] = {
    "OURS_SEQ": read_ours_sequences,
    "OURS_IMG": lambda root, cache: read_ours_images(root),
    "GOT10K_train": lambda root, cache: read_got10k(root, "train"),
    "GOT10K_vottrain": lambda root, cache: read_got10k(root, "vottrain"),
    "GOT10K_votval": lambda root, cache: read_got10k(root, "votval"),
    "LASOT": lambda root, cache: read_lasot(root),
    "TRACKINGNET": lambda root, cache: read_trackingnet(root),
    "COCO17": lambda root, cache: read_coco(root, "2017"),
    "COCO14": lambda root, cache: read_coco(root, "2014"),
}


def load_source(name: str, root: str | Path, cache_dir: Path = DEFAULT_CACHE_DIR) -> TrainingSource:
    """Read the dataset called ``name`` (a ``DATA.TRAIN.DATASETS_NAME`` entry) from ``root``."""
    if name not in READERS:
        known = ", ".join(READERS)
        raise InputError(f"unknown dataset '{name}' in DATA.TRAIN.DATASETS_NAME; use one of: {known}")
    source = READERS[name](Path(root), Path(cache_dir))
    return TrainingSource(name, source.sequences, source.stills, source.root)


def hold_out(
    sources: Sequence[TrainingSource], names: Sequence[str]
) -> tuple[list[TrainingSource], list[TrackSequence]]:
    """Take the sequences called ``names`` out of the training sources (for validation); every name must exist."""
    wanted = set(names)
    held = [s for src in sources for s in src.sequences if s.name in wanted]
    missing = wanted - {s.name for s in held}
    if missing:
        raise InputError(f"--val-seq {', '.join(sorted(missing))} is not a training sequence; check the name")
    kept = []
    for src in sources:
        sequences = tuple(s for s in src.sequences if s.name not in wanted)
        if src.is_video and not sequences:
            raise InputError(f"every sequence of {src.name} is held out for validation; hold out fewer")
        kept.append(TrainingSource(src.name, sequences, src.stills, src.root))
    return kept, held


def warm_video_cache(sources: Sequence[TrainingSource], progress: bool = True) -> None:
    """Decode every cached video once up front, before data workers start (they then only memory-map)."""
    from tqdm import tqdm

    readers = [s.frames for src in sources for s in src.sequences if isinstance(s.frames, CachedVideoFrames)]
    pending = [r for r in readers if not r.cache_file.is_file()]
    for reader in tqdm(pending, desc="decoding videos once", disable=not progress or not pending):
        reader.ensure_cached()

"""Dataset readers: OTB, LaSOT, GOT-10k, TNL2K and ours, each turning a root folder into ``Sequence`` values.

``load_dataset(root)`` detects the layout from the folder; ``load_dataset(root, layout="otb")`` forces
one. Layouts:

- ``otb``    ``<seq>/img/*.jpg`` + ``groundtruth_rect.txt`` (``.1.txt``/``.2.txt``: two targets)
- ``lasot``  ``<class>/<class-n>/img/*.jpg`` + ``groundtruth.txt``, ``full_occlusion.txt``,
             ``out_of_view.txt``, ``nlp.txt``; ``testing_set.txt`` at the root keeps only the test split
- ``got10k`` a split folder: ``<seq>/*.jpg`` + ``groundtruth.txt``, ``absence.label``; ``list.txt`` orders
- ``tnl2k``  ``<seq>/imgs/*`` + ``groundtruth.txt``, ``language.txt``
- ``ours``   ``<seq>/video.mp4`` + ``groundtruth.txt``, ``language.txt`` (``../shared/data/sequences``)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tracker.errors import InputError
from tracker.eval.sequence import Sequence, list_images, read_boxes, read_flags, read_text_line

# OTB sequences whose image folder holds more frames than the annotated range: first annotated image
# (1-based).
# Every other longer folder is annotated from its first image, so the extra images at the end are dropped.
OTB_FIRST_FRAME = {"David": 300}


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _fit_lengths(name: str, frames: tuple[Path, ...], gt: np.ndarray) -> tuple[tuple[Path, ...], np.ndarray]:
    """Frames and GT of equal length: extra frames get NaN boxes (GOT-10k test gives only the first box);
    GT lines without a frame are dropped."""
    if not frames:
        raise InputError(f"sequence {name} has no frame images; check the dataset folder")
    if len(gt) > len(frames):
        return frames, gt[: len(frames)]
    if len(gt) < len(frames):
        pad = np.full((len(frames) - len(gt), 4), np.nan)
        return frames, np.concatenate([gt, pad])
    return frames, gt


def _fit_flags(flags: np.ndarray | None, length: int) -> np.ndarray | None:
    if flags is None:
        return None
    out = np.zeros(length, dtype=bool)
    out[: min(length, len(flags))] = flags[:length]
    return out


# --- OTB ----------------------------------------------------------------------------------------------------


def _is_otb(folder: Path) -> bool:
    return (folder / "img").is_dir() and any(folder.glob("groundtruth_rect*.txt"))


def read_otb(root: Path) -> list[Sequence]:
    sequences = []
    for folder in filter(_is_otb, _subdirs(root)):
        images = list_images(folder / "img")
        images = images[OTB_FIRST_FRAME.get(folder.name, 1) - 1 :]
        gt_files = sorted(folder.glob("groundtruth_rect*.txt"))
        for gt_file in gt_files:
            # groundtruth_rect.2.txt is a second target in the same frames (Jogging, Skating2): "<seq>-2".
            suffix = gt_file.name[len("groundtruth_rect") : -len(".txt")].strip(".")
            name = f"{folder.name}-{suffix}" if suffix and len(gt_files) > 1 else folder.name
            gt = read_boxes(gt_file)
            frames = images[: len(gt)] if len(images) > len(gt) else images
            frames, gt = _fit_lengths(name, frames, gt)
            sequences.append(Sequence(name, gt, frame_paths=frames))
    return sequences


# --- LaSOT --------------------------------------------------------------------------------------------------


def _is_lasot_sequence(folder: Path) -> bool:
    return (folder / "img").is_dir() and (folder / "groundtruth.txt").is_file()


def _is_lasot(root: Path) -> bool:
    return any(_is_lasot_sequence(seq) for cls in _subdirs(root) for seq in _subdirs(cls))


def read_lasot(root: Path) -> list[Sequence]:
    wanted = None
    listing = root / "testing_set.txt"
    if listing.is_file():
        wanted = {line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()}
    sequences = []
    for class_dir in _subdirs(root):
        for folder in filter(_is_lasot_sequence, _subdirs(class_dir)):
            if wanted is not None and folder.name not in wanted:
                continue
            frames, gt = _fit_lengths(
                folder.name, list_images(folder / "img"), read_boxes(folder / "groundtruth.txt")
            )
            absent = _any_flags(len(gt), folder / "full_occlusion.txt", folder / "out_of_view.txt")
            language = read_text_line(folder / "nlp.txt")
            sequences.append(Sequence(folder.name, gt, frame_paths=frames, language=language, absent=absent))
    return sequences


def _any_flags(length: int, *paths: Path) -> np.ndarray | None:
    """Frames flagged in any of the files that exist; None if none exists."""
    present = [_fit_flags(read_flags(p), length) for p in paths if p.is_file()]
    return np.logical_or.reduce(present) if present else None


# --- GOT-10k ------------------------------------------------------------------------------------------------

GOT10K_SPLITS = ("train", "val", "test")


def _is_got10k_sequence(folder: Path) -> bool:
    return (folder / "groundtruth.txt").is_file() and bool(list_images(folder))


def _is_got10k(root: Path) -> bool:
    return (root / "list.txt").is_file() or any(_is_got10k_sequence(p) for p in _subdirs(root))


def read_got10k(root: Path) -> list[Sequence]:
    splits = [s for s in GOT10K_SPLITS if (root / s / "list.txt").is_file()]
    if splits and not (root / "list.txt").is_file():
        raise InputError(
            f"{root} holds the GOT-10k splits {', '.join(splits)}; "
            f"pass one split folder, e.g. {root / splits[0]}"
        )
    listing = root / "list.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
        folders = [root / name for name in names if _is_got10k_sequence(root / name)]
    else:
        folders = [p for p in _subdirs(root) if _is_got10k_sequence(p)]
    sequences = []
    for folder in folders:
        frames, gt = _fit_lengths(folder.name, list_images(folder), read_boxes(folder / "groundtruth.txt"))
        absent = _any_flags(len(gt), folder / "absence.label")
        sequences.append(Sequence(folder.name, gt, frame_paths=frames, absent=absent))
    return sequences


# --- TNL2K --------------------------------------------------------------------------------------------------


def _is_tnl2k(folder: Path) -> bool:
    return (folder / "imgs").is_dir() and (folder / "groundtruth.txt").is_file()


def read_tnl2k(root: Path) -> list[Sequence]:
    sequences = []
    for folder in filter(_is_tnl2k, _subdirs(root)):
        frames, gt = _fit_lengths(
            folder.name, list_images(folder / "imgs"), read_boxes(folder / "groundtruth.txt")
        )
        language = read_text_line(folder / "language.txt")
        sequences.append(Sequence(folder.name, gt, frame_paths=frames, language=language))
    return sequences


# --- ours ---------------------------------------------------------------------------------------------------


def _is_ours(folder: Path) -> bool:
    return (folder / "video.mp4").is_file() and (folder / "groundtruth.txt").is_file()


def read_ours(root: Path) -> list[Sequence]:
    sequences = []
    for folder in filter(_is_ours, _subdirs(root)):
        gt = read_boxes(folder / "groundtruth.txt")
        language = read_text_line(folder / "language.txt")
        sequences.append(Sequence(folder.name, gt, video=folder / "video.mp4", language=language))
    return sequences


# --- detection and loading ----------------------------------------------------------------------------------

# Checked in this order: the more specific layouts first (GOT-10k's "any folder with frames + groundtruth.txt"
# would also match TNL2K and ours, so it comes last).
LAYOUTS: dict[str, tuple[Callable[[Path], bool], Callable[[Path], list[Sequence]]]] = {
    "ours": (lambda root: any(_is_ours(p) for p in _subdirs(root)), read_ours),
    "otb": (lambda root: any(_is_otb(p) for p in _subdirs(root)), read_otb),
    "tnl2k": (lambda root: any(_is_tnl2k(p) for p in _subdirs(root)), read_tnl2k),
    "lasot": (_is_lasot, read_lasot),
    "got10k": (_is_got10k, read_got10k),
}


def detect_layout(root: str | Path) -> str:
    """The name of the layout ``root`` is in (a key of ``LAYOUTS``); InputError if none fits."""
    root = _existing_dir(root)
    if not (root / "list.txt").is_file() and any((root / s / "list.txt").is_file() for s in GOT10K_SPLITS):
        return "got10k"
    for name, (matches, _) in LAYOUTS.items():
        if matches(root):
            return name
    raise InputError(
        f"cannot tell the dataset layout of {root}; pass --layout with one of {', '.join(LAYOUTS)}"
    )


def load_dataset(
    root: str | Path, layout: str | None = None, names: list[str] | None = None
) -> list[Sequence]:
    """Every sequence under ``root`` (sorted by name unless the dataset's list file orders them).

    ``layout`` forces a reader (default: detected); ``names`` keeps only those sequences, in that order.
    """
    root = _existing_dir(root)
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise InputError(f"unknown dataset layout '{layout}'; use one of {', '.join(LAYOUTS)}")
    sequences = LAYOUTS[layout][1](root)
    if not sequences:
        raise InputError(f"no {layout} sequences found in {root}; check the folder or pass another --layout")
    if names:
        by_name = {seq.name: seq for seq in sequences}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise InputError(f"sequence(s) {', '.join(missing)} not in {root}; known: {', '.join(by_name)}")
        sequences = [by_name[n] for n in names]
    return sequences


def _existing_dir(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise InputError(f"dataset folder {path} does not exist; pass the folder that holds the sequences")
    return path

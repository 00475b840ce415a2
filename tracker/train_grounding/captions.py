"""Captions for grounding training: label nouns, colour words measured from pixels, position words, and captions
of things that are absent (negatives).

Colour words are only used where the pixels agree: the central part of the box must be dominated by one colour
class, otherwise the caption names no colour. Every choice draws from the generator passed in.
"""

from __future__ import annotations

import cv2
import numpy as np

# Label (as written in boxes.jsonl) -> nouns a caption may use, first the plain one.
LABEL_NOUNS: dict[str, tuple[str, ...]] = {
    "raccoon": ("raccoon", "animal"),
    "kangaroo": ("kangaroo", "animal"),
    "dog": ("dog", "animal"),
    "lion": ("lion", "big cat", "animal"),
    "person": ("person", "pedestrian"),
    "car": ("car", "vehicle"),
    "bus": ("bus", "vehicle"),
    "truck": ("truck", "lorry", "vehicle"),
    "motorbike": ("motorbike", "motorcycle"),
    "motorcycle": ("motorcycle", "motorbike"),
    "ambulance": ("ambulance", "emergency vehicle"),
    "volleyball player": ("volleyball player", "player", "person"),
    "referee": ("referee", "person"),
    "anchor handling tug supply": ("supply ship", "ship", "boat"),
    "bulk carrier": ("cargo ship", "ship", "boat"),
    "combat vessel": ("warship", "ship", "boat"),
    "container": ("container ship", "ship", "boat"),
    "kayak": ("kayak", "boat"),
    "patrol vessel": ("patrol boat", "boat", "ship"),
    "sailing vessel": ("sailboat", "sailing boat", "boat"),
    "tug": ("tugboat", "boat"),
    "yacht": ("yacht", "boat"),
    "buoy": ("buoy",),
}
PLURALS = {"person": "people", "bus": "buses", "big cat": "big cats", "pedestrian": "pedestrians"}

# Broad kinds, to pick negatives that cannot be in the picture: a caption of another kind.
KINDS: dict[str, tuple[str, ...]] = {
    "animal": ("raccoon", "kangaroo", "dog", "lion", "seagull", "bird", "cat", "horse", "cow", "sheep"),
    "person": (
        "person",
        "man",
        "woman",
        "player",
        "referee",
        "cyclist",
        "wakeboarder",
        "biker",
        "pedestrian",
        "face",
    ),
    "vehicle": ("car", "bus", "truck", "motorbike", "motorcycle", "ambulance", "lorry", "vehicle", "van"),
    # Water sports are pulled by boats: a wakeboarder's scene has a boat in it too.
    "boat": ("boat", "ship", "kayak", "yacht", "tugboat", "sailboat", "vessel", "warship", "buoy", "wakeboarder"),
    "building": ("house", "lighthouse", "building", "tower"),
}
# Negatives offered per kind of scene: never a kind that could plausibly be in the background.
ABSENT_FOR_SCENE: dict[str, tuple[str, ...]] = {
    "animal": ("vehicle", "boat", "building"),
    "person": ("animal", "boat"),
    "vehicle": ("animal", "boat"),
    "boat": ("animal",),
    "building": ("animal", "boat"),
}
NEGATIVE_NOUNS: dict[str, tuple[str, ...]] = {
    "animal": ("raccoon", "kangaroo", "dog", "lion", "horse", "cow", "giraffe", "elephant"),
    "person": ("person", "volleyball player", "referee", "man in a red shirt", "cyclist"),
    "vehicle": ("car", "bus", "truck", "motorbike", "ambulance", "red car", "white van"),
    "boat": ("boat", "sailboat", "kayak", "yacht", "cargo ship", "white boat"),
    "building": ("house", "lighthouse", "tower", "church"),
}

# HSV classes (OpenCV: H 0..180, S and V 0..255) -> colour word.
DOMINANT_FRACTION = 0.45  # a colour word needs this share of the box centre's pixels
HUE_WORDS = (
    (10, "red"),
    (22, "orange"),
    (35, "yellow"),
    (85, "green"),
    (130, "blue"),
    (150, "purple"),
    (170, "pink"),
    (181, "red"),
)

COLOUR_WORDS = ("white", "grey", "black", *dict.fromkeys(word for _, word in HUE_WORDS))


def kinds_of(text: str) -> set[str]:
    """The broad kinds a caption or label mentions (by its words); empty when it names none we know."""
    words = set(text.lower().replace(",", " ").split())
    return {kind for kind, nouns in KINDS.items() if any(noun in words for noun in nouns)}


def colour_word(image_rgb: np.ndarray, box: np.ndarray) -> str | None:
    """The colour of the central half of ``box`` (x, y, w, h) when one colour class dominates it, else None."""
    x, y, w, h = box
    x1, y1 = int(max(0, x + 0.25 * w)), int(max(0, y + 0.25 * h))
    x2, y2 = int(min(image_rgb.shape[1], x + 0.75 * w)), int(min(image_rgb.shape[0], y + 0.75 * h))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(image_rgb[y1:y2, x1:x2]), cv2.COLOR_RGB2HSV).reshape(-1, 3)
    hue, sat, val = hsv[:, 0].astype(int), hsv[:, 1].astype(int), hsv[:, 2].astype(int)
    words = np.full(len(hsv), "", dtype=object)
    grey = sat < 45
    words[grey & (val > 190)] = "white"
    words[grey & (val <= 190) & (val >= 60)] = "grey"
    words[val < 50] = "black"
    coloured = (words == "") & (sat >= 45) & (val >= 50)
    for limit, name in reversed(HUE_WORDS):
        words[coloured & (hue < limit)] = name
    names, counts = np.unique(words[words != ""], return_counts=True)
    if not len(counts):
        return None
    best = int(np.argmax(counts))
    return str(names[best]) if counts[best] >= DOMINANT_FRACTION * len(hsv) else None


def plural(noun: str) -> str:
    if noun in PLURALS:
        return PLURALS[noun]
    head, _, last = noun.rpartition(" ")
    last = PLURALS.get(last, last + ("es" if last.endswith(("s", "sh", "ch", "x")) else "s"))
    return f"{head} {last}".strip()


def position_word(cx: float, cy: float, width: int, height: int) -> str | None:
    """Where a centre lies in the picture, when clearly off-centre: 'on the left', 'at the top', ..."""
    fx, fy = cx / width, cy / height
    if fx < 0.3:
        return "on the left"
    if fx > 0.7:
        return "on the right"
    if fy < 0.3:
        return "at the top"
    if fy > 0.7:
        return "at the bottom"
    return None


def label_caption(
    image_rgb: np.ndarray, boxes: np.ndarray, labels: tuple[str, ...], label: str, rng: np.random.Generator
) -> tuple[str, np.ndarray]:
    """A caption for the objects labelled ``label`` and which of ``boxes`` it names (indices).

    One instance: 'the [colour] noun [position]'. Several: either all of them ('the raccoons') or one picked out
    by being the leftmost / rightmost / largest ('the raccoon on the left').
    """
    nouns = LABEL_NOUNS.get(label, (label,))
    noun = nouns[0] if rng.random() < 0.6 else nouns[int(rng.integers(len(nouns)))]
    same = np.array([i for i, lab in enumerate(labels) if lab == label])
    height, width = image_rgb.shape[:2]
    if len(same) > 1:
        choice = rng.random()
        if choice < 0.4:
            return f"the {plural(noun)}", same
        centres = boxes[same, 0] + 0.5 * boxes[same, 2]
        areas = boxes[same, 2] * boxes[same, 3]
        if choice < 0.7:
            order = np.argsort(centres)
            pick, word = (order[0], "on the left") if rng.random() < 0.5 else (order[-1], "on the right")
            gap = (
                abs(centres[order[0]] - centres[order[1]])
                if word == "on the left"
                else abs(centres[order[-1]] - centres[order[-2]])
            )
            if gap > 0.5 * boxes[same[pick], 2]:
                return f"the {noun} {word}", same[[pick]]
        ranked = np.argsort(areas)
        if areas[ranked[-1]] > 1.8 * areas[ranked[-2]]:
            return f"the largest {noun}", same[[ranked[-1]]]
        return f"the {plural(noun)}", same
    index = int(same[0])
    box = boxes[index]
    words = ["the"]
    colour = colour_word(image_rgb, box) if rng.random() < 0.7 else None
    if colour:
        words.append(colour)
    words.append(noun)
    where = position_word(box[0] + 0.5 * box[2], box[1] + 0.5 * box[3], width, height)
    if where and rng.random() < 0.5:
        words.append(where)
    return " ".join(words), np.array([index])


def absent_kinds(scene_kinds: set[str]) -> set[str]:
    """Kinds of thing that cannot be in a scene showing ``scene_kinds`` (empty when unsure)."""
    allowed: set[str] | None = None
    for kind in scene_kinds:
        options = set(ABSENT_FOR_SCENE.get(kind, ()))
        allowed = options if allowed is None else allowed & options
    return allowed or set()


def absent_caption(scene_kinds: set[str], rng: np.random.Generator) -> str | None:
    """A caption of a kind of thing that cannot be in a scene showing ``scene_kinds``, or None if unsure."""
    allowed = absent_kinds(scene_kinds)
    if not allowed:
        return None
    kind = sorted(allowed)[int(rng.integers(len(allowed)))]
    nouns = NEGATIVE_NOUNS[kind]
    return f"the {nouns[int(rng.integers(len(nouns)))]}"


def cannot_be_in(caption: str, scene_kinds: set[str]) -> bool:
    """True when ``caption`` names only kinds of thing that cannot be in a scene showing ``scene_kinds``."""
    kinds = kinds_of(caption)
    return bool(kinds) and kinds <= absent_kinds(scene_kinds)


def foreign_caption(scene_kinds: set[str], captions: list[str], rng: np.random.Generator) -> str | None:
    """One of ``captions`` (other clips' full descriptions) about a kind of thing that cannot be in a scene
    showing ``scene_kinds``, or None if none is safe: the long negatives a user might type by mistake."""
    options = [c for c in captions if cannot_be_in(c, scene_kinds)]
    return options[int(rng.integers(len(options)))] if options else None


def contrast_caption(
    image_rgb: np.ndarray, boxes: np.ndarray, labels: tuple[str, ...], label: str, rng: np.random.Generator
) -> str | None:
    """A caption that differs from the truth in one attribute: 'the red car' where every car in the photo has a
    measured colour and none is red. None when some instance's colour is unclear (it might be the named one)."""
    same = [i for i, lab in enumerate(labels) if lab == label]
    colours = {colour_word(image_rgb, boxes[i]) for i in same}
    if not same or None in colours:
        return None
    others = [word for word in COLOUR_WORDS if word not in colours]
    noun = LABEL_NOUNS.get(label, (label,))[0]
    return f"the {others[int(rng.integers(len(others)))]} {noun}"


def mirror_caption(caption: str) -> str:
    """The caption of a horizontally flipped picture: left and right swap."""
    swapped = []
    for word in caption.split(" "):
        swapped.append({"left": "right", "right": "left"}.get(word, word))
    return " ".join(swapped)

"""Synthetic grounding clips: coloured shapes moving over a background, captioned from what was drawn.

A caption names the target by the fewest attributes that single it out (shape, then colour, size, position,
motion), sometimes by a relation to another shape ('the square left of the red circle'), or names several
objects at once ('the blue triangles') when nothing tells them apart. Some targets enter or leave during the
clip (start/end events); negatives name a colour and shape that were not drawn. Every choice draws from the
generator passed in, so a clip is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (40, 175, 50),
    "blue": (35, 70, 225),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "orange": (245, 140, 25),
    "purple": (140, 45, 185),
}
# Sizes in pixels of a 256-pixel input, scaled with the input size.
REFERENCE_SIZE = 256
RADIUS = (8, 44)  # half-size of a shape
SMALL, BIG = 16, 32  # radii below / above which a shape may be called small / big
MAX_SPEED = 7.0  # pixels per frame
MAX_OBJECTS = 5
EVENT_CHANCE = 0.3  # the target enters or leaves during the clip
RELATION_CHANCE = 0.15


@dataclass
class Drawn:
    shape: str
    colour: str
    radius: float
    x: float
    y: float
    vx: float
    vy: float
    first: int = 0
    last: int = 10**9

    def centre(self, t: int) -> tuple[float, float]:
        return self.x + self.vx * t, self.y + self.vy * t

    def box(self, t: int) -> np.ndarray:
        cx, cy = self.centre(t)
        return np.array([cx - self.radius, cy - self.radius, 2 * self.radius, 2 * self.radius])

    def visible(self, t: int) -> bool:
        return self.first <= t <= self.last


def draw(canvas: np.ndarray, obj: Drawn, t: int, shade: float) -> None:
    cx, cy = obj.centre(t)
    r = obj.radius
    colour = tuple(int(np.clip(c * shade, 0, 255)) for c in COLOURS[obj.colour])
    if obj.shape == "circle":
        cv2.circle(canvas, (round(cx), round(cy)), round(r), colour, -1, cv2.LINE_AA)
        return
    if obj.shape == "square":
        points = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    elif obj.shape == "triangle":
        points = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    elif obj.shape == "diamond":
        points = [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    else:  # cross: two bars
        a = r / 3
        points = [
            (cx - a, cy - r),
            (cx + a, cy - r),
            (cx + a, cy - a),
            (cx + r, cy - a),
            (cx + r, cy + a),
            (cx + a, cy + a),
            (cx + a, cy + r),
            (cx - a, cy + r),
            (cx - a, cy + a),
            (cx - r, cy + a),
            (cx - r, cy - a),
            (cx - a, cy - a),
        ]
    cv2.fillPoly(canvas, [np.round(np.array(points)).astype(np.int32)], colour, cv2.LINE_AA)


def background(size: int, rng: np.random.Generator, photo: np.ndarray | None) -> np.ndarray:
    """A photo region (dimmed and blurred a little so shapes stay the salient objects) or a noisy gradient."""
    if photo is not None:
        image = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(image, (0, 0), 1.5)
    a, b = rng.integers(40, 200, size=(2, 3))
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    ramp = ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
    image = a[None, None] * (1 - ramp) + b[None, None] * ramp
    image = image + rng.normal(0, 12, size=(size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _random_objects(size: int, length: int, rng: np.random.Generator, static: bool) -> list[Drawn]:
    objects = []
    unit = size / REFERENCE_SIZE
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        radius = float(rng.uniform(*RADIUS)) * unit
        speed = 0.0 if static else MAX_SPEED * unit
        vx, vy = rng.uniform(-speed, speed, size=2) if rng.random() < 0.7 else (0.0, 0.0)
        margin = radius + speed * length
        x, y = rng.uniform(radius, size - radius, size=2)
        x = float(np.clip(x, min(margin, size / 2), max(size - margin, size / 2)))
        y = float(np.clip(y, min(margin, size / 2), max(size - margin, size / 2)))
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        objects.append(Drawn(shape, colour, radius, x, y, float(vx), float(vy)))
    return objects


def _size_word(obj: Drawn, unit: float) -> str | None:
    return "small" if obj.radius < SMALL * unit else "big" if obj.radius > BIG * unit else None


def _motion_word(obj: Drawn, unit: float) -> str | None:
    if max(abs(obj.vx), abs(obj.vy)) < 2.5 * unit:
        return None
    if abs(obj.vx) >= abs(obj.vy):
        return "moving right" if obj.vx > 0 else "moving left"
    return "moving down" if obj.vy > 0 else "moving up"


def describe(
    objects: list[Drawn], target: int, rng: np.random.Generator, unit: float = 1.0
) -> tuple[str, list[int]]:
    """Caption for ``objects[target]`` and the indices it names (more than one when they cannot be told apart);
    ``unit`` is the input size over 256 (sizes and speeds scale with it)."""
    obj = objects[target]
    group = [i for i, o in enumerate(objects) if o.shape == obj.shape]
    colour = len(group) > 1 or rng.random() < 0.6
    if colour:
        group = [i for i in group if objects[i].colour == obj.colour]
    words = [obj.colour] if colour else []
    size = _size_word(obj, unit)
    if len(group) > 1 and size and all(_size_word(objects[i], unit) != size for i in group if i != target):
        words.insert(0, size)
        group = [target]
    tail = []
    motion = _motion_word(obj, unit)
    if motion and (len(group) > 1 or rng.random() < 0.2):
        if all(_motion_word(objects[i], unit) != motion for i in group if i != target):
            group = [target]
        tail.append(motion)
    if len(group) > 1:
        xs = {i: objects[i].x for i in group}
        ordered = sorted(group, key=xs.get)
        gap = lambda a, b: abs(xs[a] - xs[b]) > objects[a].radius + objects[b].radius  # noqa: E731
        if target == ordered[0] and gap(ordered[0], ordered[1]) and not any(o.vx for o in objects):
            tail, group = ["on the left"], [target]
        elif target == ordered[-1] and gap(ordered[-1], ordered[-2]) and not any(o.vx for o in objects):
            tail, group = ["on the right"], [target]
    if len(group) > 1:
        noun = obj.shape + ("es" if obj.shape == "cross" else "s")
        return " ".join(["the", *words, noun, *tail]), group
    return " ".join(["the", *words, obj.shape, *tail]), group


def relation_caption(objects: list[Drawn], target: int) -> tuple[str, list[int]] | None:
    """'the <shape> left of / right of / above / below the <colour> <shape>' when that singles out the target."""
    obj = objects[target]
    for ref_index, ref in enumerate(objects):
        if ref_index == target or sum(o.shape == ref.shape and o.colour == ref.colour for o in objects) > 1:
            continue
        for word, holds in (
            ("left of", lambda a, b: a.x + a.radius < b.x - b.radius),
            ("right of", lambda a, b: a.x - a.radius > b.x + b.radius),
            ("above", lambda a, b: a.y + a.radius < b.y - b.radius),
            ("below", lambda a, b: a.y - a.radius > b.y + b.radius),
        ):
            same = [
                i for i, o in enumerate(objects) if o.shape == obj.shape and i != ref_index and holds(o, ref)
            ]
            if same == [target]:
                return f"the {obj.shape} {word} the {ref.colour} {ref.shape}", [target]
    return None


def absent_shape_caption(objects: list[Drawn], rng: np.random.Generator) -> str:
    drawn = {(o.colour, o.shape) for o in objects}
    while True:
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        if (colour, shape) not in drawn:
            return f"the {colour} {shape}"


def synthetic_clip(
    size: int, length: int, rng: np.random.Generator, negative: bool, photo: np.ndarray | None
) -> tuple[np.ndarray, list[np.ndarray], str]:
    """``length`` frames (T, size, size, 3) uint8 RGB, per-frame target boxes (n, 4) x, y, w, h in pixels, and
    the caption."""
    relation = rng.random() < RELATION_CHANCE
    objects = _random_objects(size, length, rng, static=relation)
    target = int(rng.integers(len(objects)))
    found = relation_caption(objects, target) if relation else None
    caption, named = found if found else describe(objects, target, rng, size / REFERENCE_SIZE)
    if negative:
        caption, named = absent_shape_caption(objects, rng), []
    elif length > 1 and rng.random() < EVENT_CHANCE:
        cut = int(rng.integers(1, length))
        for i in named:
            if rng.random() < 0.5:
                objects[i].first = cut  # enters at frame ``cut``
            else:
                objects[i].last = cut - 1  # gone from frame ``cut`` on
    base = background(size, rng, photo)
    frames, boxes = [], []
    for t in range(length):
        canvas = base.copy()
        shade = float(rng.uniform(0.85, 1.1))
        # The named objects are drawn last so nothing hides them (their boxes are the full shapes).
        for i in sorted(range(len(objects)), key=lambda i: i in named):
            if objects[i].visible(t):
                draw(canvas, objects[i], t, shade)
        noise = rng.normal(0, 4, size=canvas.shape)
        frames.append(np.clip(canvas + noise, 0, 255).astype(np.uint8))
        boxes.append(np.array([objects[i].box(t) for i in named if objects[i].visible(t)]).reshape(-1, 4))
    return np.stack(frames), boxes, caption

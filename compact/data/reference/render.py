"""Draw a `Scene` as an RGB image.

Scenes are drawn at `SUPERSAMPLE` times the requested size and downsampled, so edges are anti-aliased and small
shapes stay recognisable. Everything random comes from `scene.seed`, so a scene always renders the same pixels.
Backgrounds are textured and their colours vary, and half the scenes carry a distractor of another colour:
the class (main colour and shape) cannot be read off the mean colour of the image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from compact.data.reference.scene import ObjectGroup, Scene

SUPERSAMPLE = 2

OBJECT_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 35),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 50, 170),
    "white": (240, 240, 240),
}
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "grey": (118, 118, 118),
    "brown": (105, 72, 45),
    "black": (28, 28, 30),
}
# Diameter of one object as a fraction of the frame.
SIZE_FRACTION = {"small": 0.2, "large": 0.3}
# Where the centre of the main group goes, in frame fractions, and the axis its objects line up on.
ANCHORS = {
    "left": ((0.24, 0.5), "vertical"),
    "right": ((0.76, 0.5), "vertical"),
    "top": ((0.5, 0.22), "horizontal"),
    "bottom": ((0.5, 0.78), "horizontal"),
    "center": ((0.5, 0.5), "horizontal"),
}
# Where the distractor may go for each position of the main group (away from it).
DISTRACTOR_SPOTS = {
    "left": [(0.78, 0.22), (0.78, 0.78)],
    "right": [(0.22, 0.22), (0.22, 0.78)],
    "top": [(0.22, 0.8), (0.78, 0.8)],
    "bottom": [(0.22, 0.2), (0.78, 0.2)],
    "center": [(0.12, 0.12), (0.88, 0.88), (0.12, 0.88), (0.88, 0.12)],
}


def _jitter_colour(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in rgb)  # type: ignore[return-value]


def _background(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    # Brightness varies freely, hue only a little, so a "grey" background still looks grey.
    base = np.array(_jitter_colour(BACKGROUND_RGB[scene.background], rng, 4), dtype=np.float32)
    base = base + rng.uniform(-14, 14)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shade = np.zeros((size, size), dtype=np.float32)
    period = size / rng.uniform(5.0, 9.0)
    phase = rng.uniform(0, period)
    if scene.pattern == "striped":
        angle = rng.uniform(0, math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        shade = np.where(((t + phase) // (period / 2)) % 2 == 0, 1.0, -1.0)
    elif scene.pattern == "checkered":
        shade = np.where((((xx + phase) // period) + ((yy + phase) // period)) % 2 == 0, 1.0, -1.0)
    elif scene.pattern == "dotted":
        cx = (xx + phase) % period - period / 2
        cy = (yy + phase) % period - period / 2
        shade = np.where(cx**2 + cy**2 < (period * 0.22) ** 2, 1.0, -0.3)
    contrast = rng.uniform(18, 30)
    img = base[None, None, :] + contrast * shade[..., None]
    img += rng.normal(0, 7, size=img.shape).astype(np.float32)  # film grain on every background
    return np.clip(img, 0, 255)


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def ring(n: int, radii: list[float], offset: float) -> list[tuple[float, float]]:
        pts = []
        for i in range(n * len(radii)):
            a = offset + rot + 2 * math.pi * i / (n * len(radii))
            rr = radii[i % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return ring(4, [r * 0.92], math.pi / 4)
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.62, cy), (cx, cy + r), (cx - r * 0.62, cy)]
    if shape == "triangle":
        return ring(3, [r], -math.pi / 2)
    if shape == "star":
        return ring(5, [r, r * 0.42], -math.pi / 2)
    if shape == "cross":
        w = r * 0.34
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    raise ValueError(f"unknown shape {shape!r}")


def _draw_object(draw: ImageDraw.ImageDraw, group: ObjectGroup, cx: float, cy: float, r: float,
                 rng: np.random.Generator) -> None:
    fill = _jitter_colour(OBJECT_RGB[group.colour], rng, 15)
    outline = tuple(int(v * 0.55) for v in fill)
    width = max(1, int(r * 0.08))
    if group.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=outline, width=width)
        return
    rot = float(rng.uniform(-0.25, 0.25))
    draw.polygon(_polygon(group.shape, cx, cy, r, rot), fill=fill, outline=outline, width=width)


def render(scene: Scene, size: int = 64) -> np.ndarray:
    """Render `scene` to a (size, size, 3) uint8 array."""
    rng = np.random.default_rng(scene.seed)
    big = size * SUPERSAMPLE
    canvas = Image.fromarray(_background(scene, big, rng).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)

    (ax, ay), axis = ANCHORS[scene.position]
    r = SIZE_FRACTION[scene.main.size] * big / 2
    step = 2.05 * r
    n = scene.main.count
    for i in range(n):
        offset = (i - (n - 1) / 2) * step
        jx, jy = rng.uniform(-0.02, 0.02, size=2) * big
        cx = ax * big + (offset if axis == "horizontal" else 0) + jx
        cy = ay * big + (offset if axis == "vertical" else 0) + jy
        _draw_object(draw, scene.main, cx, cy, r, rng)

    if scene.distractor is not None:
        spots = DISTRACTOR_SPOTS[scene.position]
        sx, sy = spots[int(rng.integers(len(spots)))]
        rd = SIZE_FRACTION["small"] * big / 2
        _draw_object(draw, scene.distractor, sx * big, sy * big, rd, rng)

    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)

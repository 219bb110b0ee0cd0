"""Drawing the synthetic "shapes" images (numpy + PIL): pure functions of a numpy Generator.

An image is a textured background (two-colour gradient, low-frequency blotches), unlabeled
distractors drawn under the objects as hard negatives (lines, outlines of class shapes, arcs,
pie slices), filled class shapes in colours chosen to stand out from the background under
them, optionally a dense cluster of small shapes (a crowd), and pixel noise over all of it.
"""

import math

import numpy as np
from PIL import Image, ImageDraw


def _unit_box(points):
    """Scales a polygon so it touches all four sides of the unit box (a tight box)."""
    xs, ys = zip(*points)
    w, h = max(xs) - min(xs), max(ys) - min(ys)
    return [((x - min(xs)) / w, (y - min(ys)) / h) for x, y in points]


# Shapes as polygons in the unit box; circle and square are drawn by PIL directly.
_STAR_RADII = [1.0 if k % 2 == 0 else 0.45 for k in range(10)]
_STAR_ANGLES = [math.pi / 2 + k * math.pi / 5 for k in range(10)]
# The plus sign's 12 corners on a 3 x 3 grid, as "xy" digit pairs.
_CROSS_THIRDS = [(int(c[0]), int(c[1])) for c in "10 20 21 31 32 22 23 13 12 02 01 11".split()]
_POLYGONS = {
    "triangle": [(0, 1), (1, 1), (0.5, 0)],
    "cross": [(a / 3, b / 3) for a, b in _CROSS_THIRDS],
    "star": _unit_box(
        [(r * math.cos(t), -r * math.sin(t)) for r, t in zip(_STAR_RADII, _STAR_ANGLES)]
    ),
    "hexagon": [(0.25, 0), (0.75, 0), (1, 0.5), (0.75, 1), (0.25, 1), (0, 0.5)],
    "diamond": [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)],
    "arrow": [(0, 0.3), (0.6, 0.3), (0.6, 0), (1, 0.5), (0.6, 1), (0.6, 0.7), (0, 0.7)],
}
SHAPES = ("circle", "square", "triangle", "cross", "star", "hexagon", "diamond", "arrow")


def draw_shape(draw, shape, box, fill=None, outline=None, width=1):
    """Draws ``shape`` filling the pixels of ``box`` = (x, y, w, h) exactly."""
    x, y, w, h = box
    # PIL includes both end pixels: pixels x .. x+w-1 cover the continuous box [x, x+w).
    x1, y1 = x + w - 1, y + h - 1
    if shape == "circle":
        draw.ellipse((x, y, x1, y1), fill=fill, outline=outline, width=width)
    elif shape == "square":
        draw.rectangle((x, y, x1, y1), fill=fill, outline=outline, width=width)
    else:
        pts = [(x + u * (w - 1), y + v * (h - 1)) for u, v in _POLYGONS[shape]]
        draw.polygon(pts, fill=fill, outline=outline, width=width)


def _background(rng, size):
    """float32 (size, size, 3): gradient between two colours plus low-frequency blotches."""
    c0, c1 = rng.uniform(30, 225, size=(2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    t = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    ramp = (math.cos(angle) * t[None, :] + math.sin(angle) * t[:, None]) + 0.5
    img = c0 + (c1 - c0) * ramp[..., None]
    cells = rng.integers(3, 9)
    blotch = Image.fromarray(rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8))
    blotch = np.asarray(blotch.resize((size, size), Image.BICUBIC), dtype=np.float32) - 127.5
    return (img + rng.uniform(0.1, 0.35) * blotch).astype(np.float32)


def _colour(rng, bg, box, min_distance=80.0):
    """A random colour far enough from the background under ``box`` to be visible."""
    x, y, w, h = box
    local = bg[y : y + h, x : x + w].reshape(-1, 3).mean(0)
    best, best_d = None, -1.0
    for _ in range(10):
        c = rng.integers(0, 256, size=3)
        d = float(np.linalg.norm(c - local))
        if d >= min_distance:
            return tuple(int(v) for v in c)
        if d > best_d:
            best, best_d = c, d
    return tuple(int(v) for v in best)


def _coverage(a, b):
    """Fraction of box ``b`` (x, y, w, h) covered by box ``a``."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(iw, 0) * max(ih, 0) / (b[2] * b[3])


def _place(rng, size, w, h, placed, tries=30):
    """Top-left of a w x h box that covers as little as possible of the ``placed`` boxes
    (accepted at once if it covers at most half of each)."""
    best, best_cov = None, 2.0
    for _ in range(tries):
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        cov = max((_coverage((x, y, w, h), b) for b in placed), default=0.0)
        if cov < best_cov:
            best, best_cov = (x, y), cov
        if cov <= 0.5:
            break
    return best


def _random_box_size(rng, lo, hi):
    """Sides in [lo, hi]: log-uniform scale (as many small objects as large) times an
    aspect ratio in [2/3, 3/2]."""
    s = math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))
    r = math.sqrt(rng.uniform(2 / 3, 3 / 2))
    return int(min(max(s * r, lo), hi)), int(min(max(s / r, lo), hi))


def render_image(p, rng, kind):
    """One image: (PIL image, list of (category index, (x, y, w, h), iscrowd)).

    ``kind`` is "empty" (no object), "crowd" (a crowd region plus objects) or "normal".
    """
    size, k = p["image_size"], p["num_classes"]
    bg = _background(rng, size)
    image = Image.fromarray(bg.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)

    # Distractors first, under the objects: structure the detector must learn to call background.
    for _ in range(
        int(rng.integers(p["distractors_per_image"][0], p["distractors_per_image"][1] + 1))
    ):
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        kind_d = rng.integers(0, 4)
        if kind_d == 0:
            pts = [tuple(int(v) for v in rng.integers(0, size, size=2)) for _ in range(2)]
            draw.line(pts, fill=colour, width=int(rng.integers(1, 5)))
        else:
            w, h = _random_box_size(rng, *p["object_size"])
            x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            if kind_d == 1:  # an outline of a class shape: same silhouette, not filled
                draw_shape(
                    draw,
                    SHAPES[int(rng.integers(0, k))],
                    (x, y, w, h),
                    outline=colour,
                    width=int(rng.integers(1, 3)),
                )
            else:
                start = float(rng.uniform(0, 360))
                sweep = float(rng.uniform(60, 270))
                box = (x, y, x + w - 1, y + h - 1)
                if kind_d == 2:
                    draw.arc(box, start, start + sweep, fill=colour, width=int(rng.integers(1, 4)))
                else:
                    draw.pieslice(box, start, start + sweep, fill=colour)

    objects, placed = [], []
    if kind == "crowd":
        cls = int(rng.integers(0, k))
        side = int(rng.integers(min(32, size // 2), min(64, size // 2) + 1))
        cx, cy = _place(rng, size, side, side, placed)
        colour = _colour(rng, bg, (cx, cy, side, side))
        members = []
        for _ in range(int(rng.integers(12, 25))):
            w, h = _random_box_size(rng, 6, 12)
            x = cx + int(rng.integers(0, side - w + 1))
            y = cy + int(rng.integers(0, side - h + 1))
            draw_shape(draw, SHAPES[cls], (x, y, w, h), fill=colour)
            members.append((x, y, x + w, y + h))
        x1, y1 = min(m[0] for m in members), min(m[1] for m in members)
        x2, y2 = max(m[2] for m in members), max(m[3] for m in members)
        box = (x1, y1, x2 - x1, y2 - y1)
        placed.append(box)
        objects.append((cls, box, 1))
    if kind != "empty":
        n = int(rng.integers(p["objects_per_image"][0], p["objects_per_image"][1] + 1))
        sizes = sorted(
            (_random_box_size(rng, *p["object_size"]) for _ in range(n)), key=lambda s: -s[0] * s[1]
        )
        # Largest first: smaller shapes land on top, so occlusion never hides a whole object.
        for w, h in sizes:
            x, y = _place(rng, size, w, h, placed)
            cls = int(rng.integers(0, k))
            draw_shape(draw, SHAPES[cls], (x, y, w, h), fill=_colour(rng, bg, (x, y, w, h)))
            placed.append((x, y, w, h))
            objects.append((cls, (x, y, w, h), 0))

    # Sensor-like noise over everything, objects included.
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(
        0.0, rng.uniform(2, 8), size=(size, size, 3)
    )
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), objects

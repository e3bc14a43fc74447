"""Sprite sheets made to look like real generations, with their ground truth (for tests and benchmarks).

Props with soft drop shadows on a warm off-white or a vignette background, saved through JPEG at quality
80; a snowman whose white body is the paper's own colour inside its outline, a second one whose outline
has a gap, a donut, a dark gem, a
red ball with no outline, a sword, a pale star, a tree with a falling leaf and a crate touching the
border. Everything is placed in picture-relative coordinates, so the same sheet comes at 1024 and 2048 px.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

SS = 2  # supersampling: drawn 2x larger then shrunk, which anti-aliases the edges
OFF_WHITE = (246, 240, 226)
OUTLINE = (24, 20, 28)
GEM = (34, 30, 70)
RED = (220, 30, 30)
# The expected sprites, in reading order (rows of the sheet); the leaf belongs to the tree.
NAMES = ["gem", "ball", "snowman", "snowman_gap", "crate", "donut", "sword", "star", "tree"]


@dataclass
class Sheet:
    rgb: np.ndarray  # HxWx3 uint8, after JPEG
    objects: dict[str, np.ndarray]  # name -> coverage 0-1 (float32) of that prop at the final size
    shadow: np.ndarray  # the drop shadows' opacity 0-1 where no prop covers (before JPEG)
    background: np.ndarray  # HxWx3 float32: the clean background colour per pixel
    holes: dict[str, np.ndarray] = field(default_factory=dict)  # background enclosed by props: "donut", "all"
    size: int = 1024


def _box(rel, side):
    return [round(v * side) for v in rel]


def make_sheet(size: int = 1024, background: str = "vignette", quality: int | None = 80,
               shadows: bool = True, seed: int = 0) -> Sheet:
    """A ``size`` x ``size`` sheet; ``background``: "vignette", "off-white" or "gradient"."""
    big = size * SS
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.array(OFF_WHITE, np.float32)
    if background == "vignette":  # darker and warmer towards the corners (about 22% darker at a corner)
        r2 = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.5
        bg = base * (1 - 0.22 * r2[..., None]) * np.array([1.0, 0.98, 0.95], np.float32) ** r2[..., None]
    elif background == "gradient":  # light top-left to a darker bottom-right
        bg = base * (1 - 0.18 * ((xx + yy) / 2)[..., None])
    else:
        bg = np.broadcast_to(base, (size, size, 3)).copy()
    layers: list[tuple[str, Image.Image, Image.Image]] = []  # (name, colour RGBA layer, coverage L)
    shadow = Image.new("L", (big, big), 0)
    sd = ImageDraw.Draw(shadow)

    colour = None

    def prop(name):
        nonlocal colour
        colour = Image.new("RGBA", (big, big), (0, 0, 0, 0))
        cover = Image.new("L", (big, big), 0)
        layers.append((name, colour, cover))
        return ImageDraw.Draw(colour), ImageDraw.Draw(cover)

    def rel(box):
        return _box(box, big)

    w = max(1, round(0.004 * big))  # outline width: 4 px at 1024

    def drop(box, strength=0.5):  # an ellipse under the prop, shifted right and down
        if shadows:
            l, t, r, b = box
            sd.ellipse(rel((l + 0.01, b - 0.025, r + 0.05, b + 0.03)), fill=round(255 * strength))

    # row 1: gem, ball, snowman, snowman with a gap
    d, c = prop("gem")
    gem = [(0.12, 0.06), (0.19, 0.12), (0.12, 0.22), (0.05, 0.12)]
    d.polygon([tuple(_box(p, big)) for p in gem], fill=GEM + (255,), outline=OUTLINE + (255,), width=w)
    c.polygon([tuple(_box(p, big)) for p in gem], fill=255)
    drop((0.05, 0.06, 0.19, 0.22))
    d, c = prop("ball")
    d.ellipse(rel((0.28, 0.08, 0.42, 0.22)), fill=RED + (255,))
    c.ellipse(rel((0.28, 0.08, 0.42, 0.22)), fill=255)
    drop((0.28, 0.08, 0.42, 0.22))
    for name, x0, gap in (("snowman", 0.52, 0.0), ("snowman_gap", 0.74, 0.008)):
        d, c = prop(name)
        for box in ((x0 + 0.02, 0.04, x0 + 0.12, 0.12), (x0, 0.11, x0 + 0.14, 0.24)):
            # the body's white is the paper's own (the background shows through): only its outline encloses it
            d.ellipse(rel(box), fill=(0, 0, 0, 0), outline=OUTLINE + (255,), width=w)
            c.ellipse(rel(box), fill=255)
        if gap:  # cut the lower body's outline on its left side: an 8 px opening at 1024
            cy = 0.175
            opening = Image.new("L", (big, big), 0)
            ImageDraw.Draw(opening).rectangle(rel((x0 - 0.01, cy - gap / 2, x0 + 0.02, cy + gap / 2)), fill=255)
            body = Image.new("L", (big, big), 0)
            ImageDraw.Draw(body).ellipse(rel((x0, 0.11, x0 + 0.14, 0.24)), fill=255)
            colour.paste((0, 0, 0, 0), mask=ImageChops.multiply(opening, body))
        drop((x0, 0.04, x0 + 0.14, 0.24), 0.35)
    # row 2: donut, crate on the left border, sword
    d, c = prop("donut")
    d.ellipse(rel((0.30, 0.34, 0.50, 0.54)), fill=(170, 110, 60, 255), outline=OUTLINE + (255,), width=w)
    d.ellipse(rel((0.37, 0.41, 0.43, 0.47)), fill=(0, 0, 0, 0), outline=OUTLINE + (255,), width=w)
    c.ellipse(rel((0.30, 0.34, 0.50, 0.54)), fill=255)
    c.ellipse(rel((0.37 + 0.004, 0.41 + 0.004, 0.43 - 0.004, 0.47 - 0.004)), fill=0)  # inside its outline
    drop((0.30, 0.34, 0.50, 0.54))
    d, c = prop("crate")
    d.rectangle(rel((0.0, 0.32, 0.12, 0.46)), fill=(150, 100, 50, 255), outline=OUTLINE + (255,), width=w)
    c.rectangle(rel((0.0, 0.32, 0.12, 0.46)), fill=255)
    drop((0.0, 0.32, 0.12, 0.46))
    d, c = prop("sword")
    blade = rel((0.64, 0.30, 0.67, 0.50))
    d.rectangle(blade, fill=(190, 195, 205, 255), outline=OUTLINE + (255,), width=w)
    d.rectangle(rel((0.60, 0.50, 0.71, 0.52)), fill=(120, 90, 40, 255), outline=OUTLINE + (255,), width=w)
    d.rectangle(rel((0.645, 0.52, 0.665, 0.58)), fill=(90, 60, 30, 255), outline=OUTLINE + (255,), width=w)
    for box in (blade, rel((0.60, 0.50, 0.71, 0.52)), rel((0.645, 0.52, 0.665, 0.58))):
        c.rectangle(box, fill=255)
    drop((0.60, 0.30, 0.71, 0.58), 0.4)
    # row 3: pale star (no outline), tree with a leaf about 5 px (at 1024) below its crown
    d, c = prop("star")
    cx, cy, ro, ri = 0.15, 0.78, 0.08, 0.035
    radii = [ro if k % 2 == 0 else ri for k in range(10)]
    pts = [(cx + r * np.sin(k * np.pi / 5), cy - r * np.cos(k * np.pi / 5)) for k, r in enumerate(radii)]
    d.polygon([tuple(_box(p, big)) for p in pts], fill=(250, 228, 140, 255))
    c.polygon([tuple(_box(p, big)) for p in pts], fill=255)
    d, c = prop("tree")
    d.rectangle(rel((0.58, 0.80, 0.62, 0.92)), fill=(110, 70, 35, 255), outline=OUTLINE + (255,), width=w)
    d.ellipse(rel((0.50, 0.64, 0.70, 0.81)), fill=(40, 130, 60, 255), outline=OUTLINE + (255,), width=w)
    d.ellipse(rel((0.64, 0.802, 0.67, 0.818)), fill=(40, 130, 60, 255), outline=OUTLINE + (255,), width=w)  # the leaf
    for box in ((0.58, 0.80, 0.62, 0.92), (0.50, 0.64, 0.70, 0.81), (0.64, 0.802, 0.67, 0.818)):
        (c.rectangle if box[0] == 0.58 else c.ellipse)(rel(box), fill=255)
    drop((0.50, 0.64, 0.74, 0.92), 0.45)

    # compose: background, then the shadows (multiplied), then the props over them
    shadow_big = shadow.filter(ImageFilter.GaussianBlur(0.012 * big))
    shade = np.asarray(shadow_big.resize((size, size), Image.BOX), np.float32) / 255.0
    canvas = bg * (1 - shade[..., None])
    any_cover = np.zeros((size, size), np.float32)
    objects = {}
    for name, colour, cover in layers:
        col = np.asarray(colour.resize((size, size), Image.BOX), np.float32)
        a = col[..., 3:4] / 255.0
        # resized premultiplied (RGBa), then un-premultiplied: edges average colour, not transparent black
        premult = np.asarray(colour.convert("RGBa").resize((size, size), Image.BOX), np.float32)[..., :3]
        rgb = np.where(a > 0, premult / np.maximum(a, 1e-6), 0)
        canvas = canvas * (1 - a) + np.clip(rgb, 0, 255) * a
        cov = np.asarray(cover.resize((size, size), Image.BOX), np.float32) / 255.0
        objects[name] = cov
        any_cover = np.maximum(any_cover, cov)
    out = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    if quality:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=quality)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    sh = np.where(any_cover > 0, 0, shade).astype(np.float32)
    # background enclosed by props (not connected to the border): the donut's hole, the snowmen's necks
    from colabkit.assets.labels import label  # (in every colabkit version the benchmark compares)

    free = any_cover == 0
    regions, _n = label(free, connectivity=4)
    edge = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    enclosed = free & ~np.isin(regions, edge[edge > 0])
    parts, _n = label(enclosed, connectivity=4)
    centre = parts[round(0.44 * size), round(0.40 * size)]
    holes = {"donut": parts == centre, "all": enclosed}
    return Sheet(rgb=out, objects=objects, shadow=sh, background=bg.astype(np.float32), holes=holes, size=size)


def boxes(sheet: Sheet) -> dict[str, tuple[int, int, int, int]]:
    """Each prop's box (left, top, right, bottom; exclusive) from its coverage."""
    out = {}
    for name, cov in sheet.objects.items():
        ys, xs = np.nonzero(cov > 0)
        out[name] = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return out

"""Key a light background to transparency (numpy + PIL), or use a matting model through onnxruntime.

Flood fill, not a colour key: only background-coloured pixels connected to the picture's border become
transparent, so a white eye inside a shape stays opaque unless it opens to the outside (enclosed regions
are numbered and kept or cleared by a setting; ``close_gaps`` stops the fill at small breaks in an outline).
The background's colour is estimated at every pixel (a smooth surface), so gradients and vignettes key as
cleanly as a plain one. Drop shadows (even darkenings of the background) are kept, made soft (black with
the alpha of their darkness) or removed. Over the whole anti-aliased band of each sprite, alpha comes
from how far a pixel went from the background towards the sprite's colour, and that colour is un-mixed
from the background, so no light rim shows on a dark game scene. Every other pixel keeps its exact colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colabkit.assets.labels import dilate, label
from colabkit.errors import ColabkitError
from colabkit.i18n import _

REFERENCE_SIDE = 1024  # sizes given "in pixels of a 1024 px picture" scale with the picture's longest side
MAX_SHADOW = 0.75  # a shadow darkens the background by at most this much (darker neutral pixels are the sprite's)


def scale_of(shape) -> float:
    """How much larger than ``REFERENCE_SIDE`` the picture's longest side is (2.0 for a 2048 px picture)."""
    return max(shape[0], shape[1]) / REFERENCE_SIDE


def border_pixels(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])


def _powers(t: np.ndarray, degree: int) -> np.ndarray:
    return np.stack([t ** k for k in range(degree + 1)], axis=-1)


def _design(ys: np.ndarray, xs: np.ndarray, degree: int) -> np.ndarray:
    py, px = _powers(ys, degree), _powers(xs, degree)
    return np.stack([py[:, i] * px[:, j] for i in range(degree + 1) for j in range(degree + 1 - i)], axis=1)


def fit_surface(rgb: np.ndarray, mask: np.ndarray, degree: int, max_samples: int = 40000) -> np.ndarray:
    """A smooth colour field (HxWx3 float32): a polynomial of ``degree`` in x and y fitted to ``rgb`` on ``mask``.

    Gradients and vignettes are smooth, so a low-order surface follows them; fitted twice, dropping the
    samples farthest from the first fit (specks, shadow tails) before the second.
    """
    h, w = mask.shape
    step = max(1, int(np.sqrt(mask.sum() / max_samples)))  # a regular subsample of at most ~max_samples
    ys, xs = np.nonzero(mask[::step, ::step])
    ys, xs = ys * step, xs * step
    ny, nx = ys / max(h - 1, 1) * 2 - 1, xs / max(w - 1, 1) * 2 - 1
    values = rgb[ys, xs].astype(np.float64)
    a = _design(ny, nx, degree)
    keep = np.ones(len(ys), bool)
    for _pass in range(2):
        coef = np.linalg.lstsq(a[keep], values[keep], rcond=None)[0]
        err = np.abs(a @ coef - values).max(axis=1)
        keep = err <= max(np.quantile(err, 0.9), 2.0)
    # evaluated separably: field[y, x, c] = sum_ij y^i C_c[i, j] x^j = (Py @ C_c @ Px^T)[y, x]
    py = _powers(np.linspace(-1, 1, h), degree)
    px = _powers(np.linspace(-1, 1, w), degree)
    mats = np.zeros((3, degree + 1, degree + 1))
    k = 0
    for i in range(degree + 1):
        for j in range(degree + 1 - i):
            mats[:, i, j] = coef[k]
            k += 1
    field = np.stack([py @ mats[c] @ px.T for c in range(3)], axis=-1).astype(np.float32)
    return np.clip(field, 0, 255)


def colour_distance(rgb: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Per pixel, the largest per-channel difference from ``colour`` (one colour or a field; 0-255)."""
    return np.abs(rgb.astype(np.float32) - np.asarray(colour, np.float32)).max(axis=-1)


def outside_of(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` 4-connected to the picture's border."""
    labels, _ = label(mask, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, edge[edge > 0])


def background_field(rgb: np.ndarray, tolerance: int) -> np.ndarray:
    """The background's colour at every pixel (HxWx3 float32), for plain, gradient and vignette backgrounds.

    First a quadratic surface through the border pixels; then, twice, the background flood-filled from the
    border with it and a quartic surface fitted to all of that background. Refused when the border is busy.
    """
    h, w = rgb.shape[:2]
    ring = np.zeros((h, w), bool)
    ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = True, True, True, True
    field = fit_surface(rgb, ring, 2)
    near = (colour_distance(rgb[ring], field[ring]) <= max(tolerance, 8)).mean()
    if near < 0.5:
        colour = np.median(border_pixels(rgb), axis=0).astype(int).tolist()
        raise ColabkitError(_(
            "the picture's border is not one plain or smoothly shaded colour (only {share} of it is near {colour}): "
            "the flood fill needs a plain light background. Generate with 'white background, simple background' "
            "in the prompt, raise tolerance, or give model_file (a BiRefNet or isnet-anime .onnx).").format(
                share=f"{near:.0%}", colour=colour))
    for _round in range(2):
        background = outside_of(colour_distance(rgb, field) <= tolerance)
        if background.sum() < 64:
            break
        field = fit_surface(rgb, background, 4)
    return field


def _offsets(radius: int) -> list[tuple[int, int]]:
    """Window offsets, nearest first."""
    offs = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    return sorted(offs, key=lambda o: (o[0] ** 2 + o[1] ** 2, o))


def nearest_colour(rgb: np.ndarray, known: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: int):
    """For pixels (ys, xs): the colour of the nearest ``known`` pixel within ``radius`` (and whether one was)."""
    h, w = known.shape
    out = np.zeros((len(ys), 3), np.float32)
    found = np.zeros(len(ys), bool)
    for dy, dx in _offsets(radius):
        todo = ~found
        if not todo.any():
            break
        y, x = np.clip(ys[todo] + dy, 0, h - 1), np.clip(xs[todo] + dx, 0, w - 1)
        hit = known[y, x]
        idx = np.nonzero(todo)[0][hit]
        out[idx] = rgb[y[hit], x[hit]]
        found[idx] = True
    return out, found


def unmix_edges(rgb: np.ndarray, ring: np.ndarray, inside: np.ndarray, field: np.ndarray, band: int,
                softness: int, tolerance: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Soft alpha and un-mixed colour for the pixels of ``ring`` (the anti-aliased band of a sprite).

    A band pixel is a mix ``a * O + (1 - a) * L`` of the sprite's colour O (the colour of ``inside`` farthest
    from L within ``band + 1`` px) and the background's colour L there (``field``). ``a`` is the pixel's
    projection on the line from L to O (``softness``: the shortest span, for pale sprites); where ``a`` is at
    least 0.4 the colour is solved back (``L + (pixel - L) / a``) and blended towards O as ``a`` falls; below
    0.4 it is O (dividing JPEG noise by a small ``a`` would make a rim). A pixel past halfway but off that
    line (by more than half ``tolerance``) mixes two of the sprite's own colours and stays opaque, as does
    one nearly O. Returns (ys, xs) of the band and, per band pixel, alpha (0-1), colour and whether it lies
    on that line (a mix of background and sprite).
    """
    ys, xs = np.nonzero(ring)
    p = rgb[ys, xs].astype(np.float32)
    local = field[ys, xs].astype(np.float32)
    h, w = ring.shape
    best = p.copy()
    best_d = np.where(inside[ys, xs], ((p - local) ** 2).sum(axis=1), -1.0)
    for dy, dx in _offsets(band + 1):
        y, x = np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)
        c = rgb[y, x].astype(np.float32)
        d = ((c - local) ** 2).sum(axis=1)
        better = inside[y, x] & (d > best_d)
        best[better], best_d[better] = c[better], d[better]
    span = np.maximum(best_d, float(softness) ** 2)
    alpha = np.clip(((p - local) * (best - local)).sum(axis=1) / span, 0.0, 1.0)
    # Mostly O but off the line from L to O: a mix of two of the sprite's own colours (an outline's inner
    # side); or nearly O: opaque, unchanged. (Off the line and near L is background noise: it keeps its ramp.)
    off_line = np.abs(p - (local + alpha[:, None] * (best - local))).max(axis=1) > max(tolerance / 2, 8.0)
    on_line = ~off_line
    alpha[(off_line & (alpha >= 0.5)) | (alpha >= 0.85)] = 1.0
    solved = local + (p - local) / np.maximum(alpha, 1e-3)[:, None]
    trust = np.clip((alpha - 0.4) / 0.6, 0.0, 1.0)[:, None]  # the solved colour, more as less is divided
    colour = best * (1 - trust) + solved * trust
    colour = np.where((alpha >= 0.999)[:, None], p, colour)
    return ys, xs, alpha, np.clip(np.round(colour), 0, 255).astype(np.uint8), on_line


@dataclass
class Keyed:
    rgba: np.ndarray
    holes: list[tuple[int, int, int, int]]  # enclosed background-coloured regions (boxes), numbered from 1
    cleared: list[int]  # the numbers of those made transparent
    background: np.ndarray  # the background's colour per pixel (float32)


def parse_holes(holes: str) -> tuple[str, set[int]]:
    """'keep' | 'clear' | '1, 3' -> (mode, numbers)."""
    text = str(holes).strip().lower()
    if text in ("keep", "clear", ""):
        return text or "keep", set()
    try:
        return "some", {int(x) for x in text.replace(";", ",").replace(" ", ",").split(",") if x}
    except ValueError:
        raise ColabkitError(_("holes {value!r}: write keep, clear, or the numbers of the holes to clear from the "
                              "preview, e.g. 1, 3.").format(value=holes)) from None


def key_sheet(rgb: np.ndarray, tolerance: int = 24, softness: int = 48, shadows: str = "soft",
              close_gaps: float = 0, holes: str = "keep", band: int | None = None) -> Keyed:
    """Key the background of ``rgb`` out; see ``key_background``. ``close_gaps`` and ``band`` in pixels."""
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    band = band if band is not None else max(2, round(2 * scale_of(rgb.shape)))
    field = background_field(rgb, tolerance)
    f = rgb.astype(np.float32)
    dist = colour_distance(f, field)
    plain = dist <= tolerance
    # A shadow darkens the background evenly: the pixel is the background times one factor (within noise).
    ratio = (f / np.maximum(field, 1.0)).mean(axis=2)
    # (JPEG smears a saturated sprite's colour some pixels into its shadow: the full tolerance allows for it)
    neutral = np.abs(f - ratio[..., None] * field).max(axis=2) <= max(8.0, float(tolerance))
    shadowlike = ~plain & neutral & (ratio < 1) & (ratio >= 1 - MAX_SHADOW) if shadows != "keep" else \
        np.zeros((h, w), bool)
    passable = plain | shadowlike
    flood = passable
    radius = int(np.ceil(close_gaps / 2)) if close_gaps > 0 else 0
    if radius:  # the sprites grown by half the gap: openings narrower than close_gaps do not let the fill in
        flood = passable & ~dilate(~passable, radius)
    outside = outside_of(flood)
    if radius:
        outside = dilate(outside, radius + 1) & passable
        # a passage narrower than the closing (between a crown and its leaf) is background, not a hole:
        # regions beside the outside with no pixel the closed fill could reach are thin all through
        rest, m = label(passable & ~outside, connectivity=4)
        if m:
            thick = np.unique(rest[flood & (rest > 0)])
            beside = np.unique(rest[dilate(outside, 1) & (rest > 0)])
            outside |= np.isin(rest, np.setdiff1d(beside, thick))
    # Enclosed background-coloured regions: numbered (the preview shows the numbers), kept or cleared.
    enclosed, n = label(passable & ~outside, connectivity=4)
    mode, numbers = parse_holes(holes)
    min_hole = max(16, round(64 * scale_of(rgb.shape) ** 2))
    boxes, cleared = [], []
    if n:
        sizes = np.bincount(enclosed.ravel(), minlength=n + 1)
        # mostly the background's own colour (a few JPEG-darkened pixels in it): a grey blade is not a hole
        plain_share = np.bincount(enclosed.ravel(), weights=plain.ravel(), minlength=n + 1) / np.maximum(sizes, 1)
        for k in np.nonzero((sizes >= min_hole) & (plain_share >= 0.5))[0]:
            if k == 0:
                continue
            ys, xs = np.nonzero(enclosed == k)
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
            if mode == "clear" or len(boxes) in numbers:
                outside |= enclosed == k
                cleared.append(len(boxes))
    foreground = ~outside
    alpha = np.where(foreground, 1.0, 0.0).astype(np.float32)
    out_rgb = rgb.copy()
    shade = outside & shadowlike
    if shadows == "soft":  # black, as opaque as the shadow is dark: over any ground it darkens as it did here
        # (less the darkness the tolerance allows, so the shadow fades to nothing where the background starts)
        floor = tolerance / np.maximum(field.mean(axis=2), 1.0)
        alpha[shade] = np.clip((1.0 - ratio - floor) / np.maximum(1.0 - floor, 0.05), 0.0, 1.0)[shade]
        out_rgb[shade] = 0
    # The anti-aliased band: the sprite's pixels next to the background, and the shadow-like pixels next to
    # the sprite (a dark outline's anti-aliasing looks like a shadow: it is the sprite's edge).
    ring = (foreground & dilate(outside, band)) | (shade & dilate(foreground, band))
    ys, xs, a, colour, mix = unmix_edges(rgb, ring, foreground, field, band, softness, tolerance)
    # a shadow pixel beside the sprite is its edge only if it is a mix of the background and the sprite
    edge_wins = ~shade[ys, xs] | (mix & (a >= alpha[ys, xs]))
    alpha[ys[edge_wins], xs[edge_wins]] = a[edge_wins]
    out_rgb[ys[edge_wins], xs[edge_wins]] = colour[edge_wins]
    a8 = np.round(alpha * 255).astype(np.uint8)
    return Keyed(rgba=np.dstack([out_rgb, a8]), holes=boxes, cleared=cleared, background=field)


def key_background(rgb: np.ndarray, tolerance: int = 24, softness: int = 48, shadows: str = "soft",
                   close_gaps: float = 0, holes: str = "keep") -> np.ndarray:
    """An RGBA array: ``rgb`` with its border-connected light background transparent and soft edges.

    ``tolerance``: a pixel within this (per channel, 0-255) of the background's colour *at that pixel*
    (estimated over the whole picture, so gradients and vignettes key cleanly) is background if it
    connects to the border. ``softness``: the shortest alpha ramp (same units) of an edge pixel, for shapes
    whose colour is close to the background's. ``shadows``: drop shadows (neutral darkenings of the
    background connected to it) are kept opaque ("keep"), made black with the alpha of their darkness
    ("soft"), or removed. ``close_gaps``: openings in an outline narrower than this many pixels do not let
    the background in. ``holes``: enclosed background-coloured regions: "keep", "clear" or their numbers.
    """
    return key_sheet(rgb, tolerance, softness, shadows, close_gaps, holes).rgba


# -- a learned matting model (optional) -------------------------------------------------------------------------

_MODELS = "BiRefNet (MIT, e.g. BiRefNet-general-epoch_244.onnx) or isnet-anime (Apache-2.0, isnet-anime.onnx)"


def model_alpha(rgb: np.ndarray, model_file: str | Path) -> np.ndarray:
    """Alpha (uint8, HxW) from a salient-object matting model in ONNX form, run with onnxruntime on the CPU.

    Input: one RGB picture resized to the model's square input, normalised with ImageNet's mean (and its
    std for BiRefNet; isnet-anime was trained with std 1). Output: the first map as a probability (BiRefNet's
    logits through a sigmoid; isnet's map stretched to [0, 1], as rembg does), resized back.
    """
    from PIL import Image

    path = Path(model_file).expanduser()
    if not path.is_file():
        raise ColabkitError(_("model_file {path} does not exist. Put {models} there, or leave model_file empty to "
                              "use the flood fill (no model needed).").format(path=path, models=_MODELS))
    try:
        import onnxruntime as ort
    except ImportError:
        raise ColabkitError(_("model_file needs onnxruntime: pip install onnxruntime (or leave model_file empty to "
                              "use the flood fill).")) from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a bad file
        raise ColabkitError(_("{name} is not a usable ONNX model ({error}). Use {models}.").format(
                                name=path.name, error=str(e).splitlines()[0][:200], models=_MODELS)) from None
    inp = session.get_inputs()[0]
    shape = inp.shape
    side = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else 1024
    h, w = rgb.shape[:2]
    x = np.asarray(Image.fromarray(rgb).resize((side, side), Image.BILINEAR), dtype=np.float32) / 255.0
    isnet = "isnet" in path.name.lower()
    std = (1.0, 1.0, 1.0) if isnet else (0.229, 0.224, 0.225)
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array(std, np.float32)
    pred = session.run(None, {inp.name: x.transpose(2, 0, 1)[None].astype(np.float32)})[0]
    pred = np.asarray(pred, dtype=np.float32).reshape(pred.shape[-2], pred.shape[-1])
    if isnet:  # as rembg runs isnet-anime: the map stretched to [0, 1]
        pred = (pred - pred.min()) / max(float(pred.max() - pred.min()), 1e-6)
    elif pred.min() < 0 or pred.max() > 1:  # BiRefNet gives logits
        pred = 1.0 / (1.0 + np.exp(-pred))
    # every branch above leaves pred in [0, 1] (a sigmoid, a stretch, or a map already inside it): no clip needed
    mask = Image.fromarray(np.round(pred * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    return np.asarray(mask, dtype=np.uint8)


def unmix_alpha(rgb: np.ndarray, alpha: np.ndarray, band: int) -> np.ndarray:
    """Colours for a matting model's soft alpha: the background's colour un-mixed from the edge pixels.

    The background is a smooth surface fitted to the pixels the model calls background; an edge pixel with
    alpha a is solved back (``L + (pixel - L) / a``), blended towards the nearest opaque pixel's colour as
    ``a`` falls (below 0.4: that colour alone, where dividing JPEG noise would make a rim).
    """
    out = rgb.copy()
    clear = alpha < 16
    if clear.sum() < 64:
        return out
    field = fit_surface(rgb, clear, 4)
    soft = (alpha >= 1) & (alpha < 250)
    ys, xs = np.nonzero(soft)
    if not len(ys):
        return out
    a = alpha[ys, xs].astype(np.float32)[:, None] / 255.0
    p, local = rgb[ys, xs].astype(np.float32), field[ys, xs]
    solved = local + (p - local) / a
    near, found = nearest_colour(rgb, alpha >= 250, ys, xs, 2 * band + 2)
    near = np.where(found[:, None], near, solved)  # nothing opaque near: the solved colour (clipped below)
    trust = np.clip((a - 0.4) / 0.6, 0.0, 1.0)
    out[ys, xs] = np.clip(np.round(near * (1 - trust) + solved * trust), 0, 255).astype(np.uint8)
    return out


def cut_out(rgb: np.ndarray, tolerance: int = 24, softness: int = 48, model_file: str = "", **options) -> np.ndarray:
    """RGBA: the model's alpha (colours un-mixed) when ``model_file`` is given, else the keyed background.

    ``options``: ``key_background``'s shadows, close_gaps and holes (in pixels).
    """
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
    if model_file:
        alpha = model_alpha(rgb, model_file)
        return np.dstack([unmix_alpha(rgb, alpha, max(2, round(2 * scale_of(rgb.shape)))), alpha])
    return key_background(rgb, tolerance, softness, **options)


@dataclass
class CutSheet:
    rgba: np.ndarray
    sprites: list  # sprites.Sprite, in reading order
    holes: list[tuple[int, int, int, int]]  # enclosed background-coloured regions, numbered from 1
    cleared: list[int]
    notes: list[str]  # warnings for the person


def cut_sheet(rgb: np.ndarray, cfg, already_cut: bool = False) -> CutSheet:
    """One picture through the settings of ``cfg`` (a CutoutConfig): keyed (or the model's), then split.

    Sizes in ``cfg`` are pixels of a 1024 px picture: scaled here by the picture's longest side / 1024.
    ``already_cut``: ``rgb`` is an RGBA picture with its own transparency: only split.
    """
    from colabkit.assets.sprites import split_sprites

    arr = np.asarray(rgb)
    scale = scale_of(arr.shape)
    holes, cleared, threshold = [], [], 1
    if already_cut:
        rgba = np.ascontiguousarray(arr, dtype=np.uint8)
    elif cfg.model_file:
        rgba = cut_out(arr, model_file=cfg.model_file)
        threshold = max(cfg.alpha_threshold, 1)
    else:
        keyed = key_sheet(arr[..., :3], cfg.tolerance, cfg.softness, cfg.shadows, cfg.close_gaps * scale, cfg.holes)
        rgba, holes, cleared = keyed.rgba, keyed.holes, keyed.cleared
    sprites = split_sprites(rgba, gap=round(cfg.gap * scale), min_area=round(cfg.min_area * scale * scale),
                            margin=round(cfg.margin * scale), threshold=threshold)
    notes = []
    h, w = rgba.shape[:2]
    for i, s in enumerate(sprites, 1):
        l, t, r, b = s.box
        if (r - l) * (b - t) > 0.4 * w * h:
            notes.append(_("sprite {number} covers {share} of the picture: the background was probably not all "
                           "found. Raise tolerance, set close_gaps, or give model_file.").format(
                               number=i, share=f"{(r - l) * (b - t) / (w * h):.0%}"))
    return CutSheet(rgba, sprites, holes, cleared, notes)


# -- the step: a folder of pictures -> sprites, atlas, JSON -------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PREVIEW_SIDE = 768


def png_bytes(image, pnginfo=None) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=pnginfo)
    return buf.getvalue()


def checkerboard(w: int, h: int, cell: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    light = ((yy // cell + xx // cell) % 2).astype(bool)
    board = np.where(light[..., None], 235, 200).astype(np.uint8)
    return np.repeat(board, 3, axis=2)


def preview(rgba: np.ndarray, boxes: list[tuple[int, int, int, int]],
            holes: list[tuple[int, int, int, int]] = (), cleared: list[int] = ()):
    """The cut-out over a checkerboard (transparency shows) with each sprite's box and number, and each
    enclosed region (a hole) numbered ``hole N`` in blue (its number is what the ``holes`` setting takes)."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = rgba.shape[:2]
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * a + checkerboard(w, h).astype(np.float32) * (1 - a)
    im = Image.fromarray(np.round(rgb).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    side = max(w, h) / PREVIEW_SIDE  # drawn at the picture's size, then shrunk to PREVIEW_SIDE
    try:
        font = ImageFont.load_default(size=max(10, round(14 * side)))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    width = max(1, round(side))
    for i, (l, t, r, b) in enumerate(boxes, 1):
        draw.rectangle((l - 1, t - 1, r, b), outline=(230, 30, 90), width=width)
        draw.text((l + 2, t + 1), str(i), fill=(230, 30, 90), font=font)
    for i, (l, t, r, b) in enumerate(holes, 1):
        colour = (40, 90, 230) if i not in cleared else (120, 120, 120)
        draw.rectangle((l, t, r - 1, b - 1), outline=colour, width=width)
        draw.text((l + 2, t + 1), _("hole {number}").format(number=i), fill=colour, font=font)
    im.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return im


def _folders(cfg) -> tuple[Path, Path]:
    from colabkit.project import open_project

    project = open_project(cfg.project_name) if cfg.project_name else None
    source = Path(cfg.input_folder).expanduser() if cfg.input_folder else project.output / "generated"
    if cfg.output_folder:
        dest = Path(cfg.output_folder).expanduser()
    else:
        dest = project.output / "assets" if project else source / "assets"
    if not source.is_dir():
        hint = (_("Generate pictures first (the generate step), or give input_folder.") if not cfg.input_folder
                else _("Check the path (in Colab: /content/drive/MyDrive/...)."))
        raise ColabkitError(_("No folder of pictures at {source}. {hint}").format(source=source, hint=hint))
    return source, dest


def _read(path: Path):
    """(RGBA array, has its own transparency: some pixel is not fully opaque) of a picture file.

    Only an alpha band or a transparent palette entry gives RGBA pixels under 255, so those pixels alone tell.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        rgba = np.asarray(ImageOps.exif_transpose(im).convert("RGBA"), dtype=np.uint8)
    return rgba, bool((rgba[..., 3] < 255).any())


def _unique(name: str, used: set[str]) -> str:
    out, k = name, 2
    while out.lower() in used:
        out, k = f"{name}_{k}", k + 1
    used.add(out.lower())
    return out


def write_atlas(folder: Path, name: str, frames: dict, cfg) -> list[Path]:
    """The atlas pages, their JSON hashes and Phaser's multi-atlas JSON in ``folder``; returns the PNG paths."""
    from PIL import Image

    from colabkit import files
    from colabkit.assets.atlas import build_atlas, multiatlas

    pages = build_atlas(frames, name, cfg.atlas_padding, cfg.max_size, cfg.power_of_two, cfg.extrude)
    out = []
    for image, array, data in pages:
        out.append(files.write_bytes(folder / image, png_bytes(Image.fromarray(array, "RGBA"))))
        files.write_json(folder / (image[:-4] + ".json"), data)
    files.write_json(folder / f"{name}.multiatlas.json", multiatlas(pages))
    return out


def cut_out_images(cfg) -> list[Path]:
    """Cut every picture of the input folder out; returns each picture's output folder.

    For ``picture.png``: ``<output>/picture/`` gets ``cutout.png`` (the whole picture, transparent background),
    ``picture_01.png``, ``picture_02.png``... (the sprites, or the names given in ``names``) and ``preview.png``.
    With ``one_atlas`` the output folder gets one atlas for all of them, ``<atlas_name>.png`` + ``.json`` (or
    pages ``-0``, ``-1``...) and ``<atlas_name>.multiatlas.json``; else each picture's folder gets its own
    ``<picture>_atlas``. The input pictures are only read.
    """
    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm

    from colabkit import display, files
    from colabkit.assets.atlas import Frame
    from colabkit.assets.sprites import bleed, on_canvas, reduce_palette, sprite_names

    source, dest = _folders(cfg)
    pictures = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                      and not p.name.startswith("."))
    if not pictures:
        raise ColabkitError(_("No pictures (.png, .jpg, .webp...) directly in {folder}.").format(folder=source))
    done, rows, skipped, notes, used = [], [], [], [], set()
    cut: list[tuple[str, Path, CutSheet]] = []
    for path in tqdm(pictures, desc=_("cutting out"), unit=_("picture")):
        try:
            rgba, transparent = _read(path)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            skipped.append(_("{name}: not readable as a picture ({error})").format(name=path.name, error=e))
            continue
        try:
            sheet = cut_sheet(rgba if transparent else rgba[..., :3], cfg, already_cut=transparent)
        except ColabkitError as e:
            if cfg.model_file:
                raise
            skipped.append(f"{path.name}: {e}")
            continue
        # picture.png and picture.jpg both exist: the second gets its suffix in the name, never a shared folder
        stem = path.stem if path.stem.lower() not in used else f"{path.stem}-{path.suffix.lstrip('.').lower()}"
        used.add(stem.lower())
        cut.append((stem, path, sheet))
        notes.extend(f"{path.name}: {n}" for n in sheet.notes)
    # the set's sprites: one canvas, one naming, one atlas
    every = [(stem, path, i, s) for stem, path, sheet in cut for i, s in enumerate(sheet.sprites, 1)]
    scale = max((scale_of(sheet.rgba.shape) for _s, _p, sheet in cut), default=1.0)
    images = [s.image for *_rest, s in every]
    palette, pixel_note = None, ""
    if cfg.pixel_art and images:
        images, palette, pixel_note = _pixel_art(cut, cfg)
    margin = 1 if palette is not None else round(cfg.margin * scale)  # pixel art: one art pixel around
    placed = on_canvas(images, cfg.canvas, cfg.canvas_height, margin, cfg.pivot_xy)
    given = sprite_names(cfg.names)
    frames_of: dict[str, dict] = {stem: {} for stem, _p, _s in cut}
    names_used = {stem.lower() for stem, _p, _s in cut}
    for k, ((stem, path, i, s), (image, pivot)) in enumerate(zip(every, placed)):
        name = _unique(given[k] if k < len(given) else f"{stem}_{i:02d}", names_used)
        pixels = reduce_palette(image, cfg.palette_colors) if cfg.palette_colors and palette is None else image
        pixels = bleed(pixels)
        l, t, r, b = s.box
        files.write_bytes(dest / stem / f"{name}.png", png_bytes(Image.fromarray(pixels, "RGBA")))
        frames_of[stem][f"{name}.png"] = Frame(pixels, pivot, {"image": path.name, "x": l, "y": t, "w": r - l,
                                                               "h": b - t})
    for stem, path, sheet in cut:
        folder = dest / stem
        files.write_bytes(folder / "cutout.png", png_bytes(Image.fromarray(bleed(sheet.rgba), "RGBA")))
        if frames_of[stem] and not cfg.one_atlas:
            write_atlas(folder, f"{stem}_atlas", frames_of[stem], cfg)
        files.write_bytes(folder / "preview.png", png_bytes(
            preview(sheet.rgba, [s.box for s in sheet.sprites], sheet.holes, sheet.cleared)))
        done.append(folder)
        rows.append({_("picture"): path.name, _("sprites"): len(sheet.sprites), _("holes"): len(sheet.holes),
                     _("saved in"): str(folder)})
    if palette is not None:
        from colabkit.assets.pixelart import palette_files

        png, hex_text = palette_files(palette)
        files.write_bytes(dest / "palette.png", png)
        files.write_bytes(dest / "palette.hex", hex_text.encode())
    atlas_pages = []
    if cfg.one_atlas and any(frames_of.values()):
        name = cfg.atlas_name.strip() or _safe_name(source.name)
        atlas_pages = write_atlas(dest, name, {k: v for f in frames_of.values() for k, v in f.items()}, cfg)
    display.show_table(rows, _("Cut out {done} of {total} pictures from {folder}").format(
        done=len(done), total=len(pictures), folder=source))
    if atlas_pages:
        display.show_text(_("One atlas for the set: {pages}").format(pages=", ".join(str(p) for p in atlas_pages)))
    if pixel_note:
        display.show_text(pixel_note)
    for line in skipped:
        display.show_text(_("skipped {line}").format(line=line), "warn")
    for line in notes:
        display.show_text(line, "warn")
    for folder in done[:8]:
        display.show_image(folder / "preview.png", _("{name}: cut out, sprites and holes numbered").format(
            name=folder.name), width=600)
    if len(done) > 8:
        display.show_text(_("... and {more} more in {folder}").format(more=len(done) - 8, folder=dest))
    return done


def _pixel_art(cut, cfg):
    """Every sprite of the set at one pixel per art pixel, on one palette: (images, palette, a note to show)."""
    from colabkit.assets.pixelart import apply_palette, detect_pixel_size, downscale, grid_offset, shared_palette

    images, found = [], []
    for stem, path, sheet in cut:
        if cfg.pixel_size:
            k, (ox, oy) = cfg.pixel_size, grid_offset(sheet.rgba, cfg.pixel_size)
        else:
            k, ox, oy = detect_pixel_size(sheet.rgba)
        found.append(f"{path.name}: {k}")
        images += [downscale(s.image, k, (ox, oy), s.origin) for s in sheet.sprites]
    palette = shared_palette(images, cfg.palette_colors or 16)
    note = _("pixel art: one art pixel is (picture: its size in pixels) {sizes}; one palette of {n} colours for the "
             "set.").format(
        sizes=", ".join(found), n=len(palette))
    return [apply_palette(im, palette) for im in images], palette, note


def _safe_name(name: str) -> str:
    import re

    return re.sub(r"[^\w\-]+", "_", name).strip("_") or "atlas"

"""Key a plain light background to transparency (numpy + PIL), or use a matting model through onnxruntime.

Flood fill, not a colour key: only background-coloured pixels connected to the picture's border become
transparent, so a white eye or a hole inside a shape stays opaque unless it opens to the outside. The
edge is soft: pixels next to the background get an alpha from how far their colour is from it (an
anti-aliased line keeps its smooth edge), and their colour is un-mixed from the background so no
light halo shows on a dark game scene. Every other pixel keeps its exact colour.
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
    ys, xs = np.nonzero(mask)
    if len(ys) > max_samples:
        pick = np.random.default_rng(0).choice(len(ys), max_samples, replace=False)
        ys, xs = ys[pick], xs[pick]
    ny, nx = ys / max(h - 1, 1) * 2 - 1, xs / max(w - 1, 1) * 2 - 1
    values = rgb[ys, xs].astype(np.float64)
    a = _design(ny, nx, degree)
    keep = np.ones(len(ys), bool)
    for _ in range(2):
        coef = np.linalg.lstsq(a[keep], values[keep], rcond=None)[0]
        err = np.abs(a @ coef - values).max(axis=1)
        keep = err <= max(np.quantile(err, 0.9), 2.0)
    # evaluated separably: field[y, x] = sum c_ij y^i x^j
    py = _powers(np.linspace(-1, 1, h), degree)
    px = _powers(np.linspace(-1, 1, w), degree)
    field = np.zeros((h, w, 3), np.float32)
    k = 0
    for i in range(degree + 1):
        for j in range(degree + 1 - i):
            field += (py[:, i][:, None, None] * px[:, j][None, :, None] * coef[k]).astype(np.float32)
            k += 1
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


def max_filter(a: np.ndarray, radius: int) -> np.ndarray:
    """The largest value within ``radius`` pixels (a square window), per pixel."""
    out = a
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = np.max([np.take(p, np.arange(k, k + n), axis=axis) for k in range(2 * radius + 1)], axis=0)
    return out


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
                softness: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Soft alpha and un-mixed colour for the pixels of ``ring`` (the anti-aliased band of a sprite).

    A band pixel is a mix ``a * O + (1 - a) * L`` of the sprite's colour O (the colour of ``inside`` farthest
    from L within ``band + 1`` px) and the background's colour L there (``field``). ``a`` is the pixel's
    projection on the line from L to O (``softness``: the shortest span, for pale sprites); where ``a`` is at
    least 0.4 the colour is solved back (``L + (pixel - L) / a``) and blended towards O as ``a`` falls; below
    0.4 it is O (dividing JPEG noise by a small ``a`` would make a rim). Returns (ys, xs) of the band and, per band pixel, alpha (0-1) and colour.
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
    solved = local + (p - local) / np.maximum(alpha, 1e-3)[:, None]
    trust = np.clip((alpha - 0.4) / 0.6, 0.0, 1.0)[:, None]  # the solved colour, more as less is divided
    colour = best * (1 - trust) + solved * trust
    colour = np.where((alpha >= 0.999)[:, None], p, colour)
    return ys, xs, alpha, np.clip(np.round(colour), 0, 255).astype(np.uint8)


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
    neutral = np.abs(f - ratio[..., None] * field).max(axis=2) <= max(8.0, tolerance / 2)
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
    # Enclosed background-coloured regions: numbered (the preview shows the numbers), kept or cleared.
    enclosed, n = label(plain & ~outside, connectivity=4)
    mode, numbers = parse_holes(holes)
    min_hole = max(16, round(64 * scale_of(rgb.shape) ** 2))
    boxes, cleared = [], []
    if n:
        sizes = np.bincount(enclosed.ravel(), minlength=n + 1)
        for k in np.nonzero(sizes >= min_hole)[0]:
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
        alpha[shade] = 1.0 - ratio[shade]
        out_rgb[shade] = 0
    # The anti-aliased band: the sprite's pixels next to the background, and the shadow-like pixels next to
    # the sprite (a dark outline's anti-aliasing looks like a shadow: it is the sprite's edge).
    ring = (foreground & dilate(outside, band)) | (shade & dilate(foreground, band))
    ys, xs, a, colour = unmix_edges(rgb, ring, foreground, field, band, softness)
    edge_wins = ~shade[ys, xs] | (a >= alpha[ys, xs])  # a soft shadow under the edge keeps its own alpha
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
        raise ColabkitError(f"model_file {path} does not exist. Put {_MODELS} there, or leave model_file empty "
                            "to use the flood fill (no model needed).")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ColabkitError("model_file needs onnxruntime: pip install onnxruntime (or leave model_file empty "
                            "to use the flood fill).") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a bad file
        raise ColabkitError(f"{path.name} is not a usable ONNX model ({str(e).splitlines()[0][:200]}). "
                            f"Use {_MODELS}.") from None
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
    mask = Image.fromarray(np.round(np.clip(pred, 0, 1) * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    return np.asarray(mask, dtype=np.uint8)


def cut_out(rgb: np.ndarray, tolerance: int = 24, softness: int = 48, model_file: str = "") -> np.ndarray:
    """RGBA: the model's alpha when ``model_file`` is given, else the flood-filled background key."""
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
    if model_file:
        return np.dstack([rgb, model_alpha(rgb, model_file)])
    return key_background(rgb, tolerance, softness)


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


def preview(rgba: np.ndarray, boxes: list[tuple[int, int, int, int]]):
    """The cut-out over a checkerboard (transparency shows) with each sprite's box and number."""
    from PIL import Image, ImageDraw

    h, w = rgba.shape[:2]
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * a + checkerboard(w, h).astype(np.float32) * (1 - a)
    im = Image.fromarray(np.round(rgb).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for i, (l, t, r, b) in enumerate(boxes, 1):
        draw.rectangle((l - 1, t - 1, r, b), outline=(230, 30, 90), width=max(1, w // 400))
        draw.text((l + 2, t + 1), str(i), fill=(230, 30, 90))
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
        hint = ("Generate pictures first (the generate step), or give input_folder." if not cfg.input_folder
                else "Check the path (in Colab: /content/drive/MyDrive/...).")
        raise ColabkitError(f"No folder of pictures at {source}. {hint}")
    return source, dest


def cut_out_images(cfg) -> list[Path]:
    """Cut every picture of the input folder out; returns each picture's output folder.

    For ``picture.png``: ``<output>/picture/`` gets ``cutout.png`` (the whole picture, transparent background),
    ``picture_01.png``, ``picture_02.png``... (the sprites), ``atlas.png`` + ``atlas.json`` and ``preview.png``.
    The input pictures are only read.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError
    from tqdm.auto import tqdm

    from colabkit import display, files
    from colabkit.assets.atlas import build_atlas
    from colabkit.assets.sprites import reduce_palette, split_sprites

    source, dest = _folders(cfg)
    pictures = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                      and not p.name.startswith("."))
    if not pictures:
        raise ColabkitError(f"No pictures (.png, .jpg, .webp...) directly in {source}.")
    done, rows, skipped, used = [], [], [], set()
    for path in tqdm(pictures, desc="cutting out", unit="picture"):
        try:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                has_alpha = "A" in im.getbands() or "transparency" in im.info
                rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            skipped.append(f"{path.name}: not readable as a picture ({e})")
            continue
        try:
            if has_alpha and (rgba[..., 3] < 255).any():
                sheet = rgba  # already transparent (cut out elsewhere): only split it
            else:
                sheet = cut_out(rgba[..., :3], cfg.tolerance, cfg.softness, cfg.model_file)
        except ColabkitError as e:
            if cfg.model_file:
                raise
            skipped.append(f"{path.name}: {e}")
            continue
        sprites = split_sprites(sheet, gap=cfg.gap, min_area=cfg.min_area, margin=cfg.margin)
        # picture.png and picture.jpg both exist: the second gets its suffix in the name, never a shared folder
        stem = path.stem if path.stem not in used else f"{path.stem}-{path.suffix.lstrip('.').lower()}"
        used.add(stem)
        folder = dest / stem
        files.write_bytes(folder / "cutout.png", png_bytes(Image.fromarray(sheet, "RGBA")))
        frames = {}
        for i, s in enumerate(sprites, 1):
            pixels = reduce_palette(s.image, cfg.palette_colors) if cfg.palette_colors else s.image
            name = f"{stem}_{i:02d}.png"
            files.write_bytes(folder / name, png_bytes(Image.fromarray(pixels, "RGBA")))
            frames[name] = pixels
        if frames:
            atlas, meta = build_atlas(frames, "atlas.png", cfg.atlas_padding)
            meta["meta"]["source"] = path.name
            files.write_bytes(folder / "atlas.png", png_bytes(Image.fromarray(atlas, "RGBA")))
            files.write_json(folder / "atlas.json", meta)
        files.write_bytes(folder / "preview.png", png_bytes(preview(sheet, [s.box for s in sprites])))
        done.append(folder)
        rows.append({"picture": path.name, "sprites": len(sprites), "saved in": str(folder)})
    display.show_table(rows, f"Cut out {len(done)} of {len(pictures)} pictures from {source}")
    for line in skipped:
        display.show_text(f"skipped {line}", "warn")
    for folder in done[:8]:
        display.show_image(folder / "preview.png", f"{folder.name}: cut out, sprites numbered", width=600)
    if len(done) > 8:
        display.show_text(f"... and {len(done) - 8} more in {dest}")
    return done

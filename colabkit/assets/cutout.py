"""Key a plain light background to transparency (numpy + PIL), or use a matting model through onnxruntime.

Flood fill, not a colour key: only background-coloured pixels connected to the picture's border become
transparent, so a white eye or a hole inside a shape stays opaque unless it opens to the outside. The
edge is soft: pixels next to the background get an alpha from how far their colour is from it (an
anti-aliased line keeps its smooth edge), and their colour is un-mixed from the background so no
light halo shows on a dark game scene. Every other pixel keeps its exact colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from colabkit.assets.labels import dilate, label
from colabkit.errors import ColabkitError

EDGE = 1  # the ring of pixels next to the background whose alpha comes from their colour (anti-aliasing)


def border_pixels(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])


def background_colour(rgb: np.ndarray, tolerance: int) -> np.ndarray:
    """The background's colour: the median of the border pixels; it must cover most of the border."""
    edge = border_pixels(rgb).astype(np.int16)
    colour = np.median(edge, axis=0)
    near = (np.abs(edge - colour).max(axis=1) <= max(tolerance, 8)).mean()
    if near < 0.5:
        raise ColabkitError(
            f"the picture's border is not one plain colour (only {near:.0%} of it is near {colour.astype(int).tolist()})"
            ": the flood fill needs a plain light background. Generate with 'white background, simple background' "
            "in the prompt, raise tolerance, or give model_file (a BiRefNet or isnet-anime .onnx).")
    return colour.astype(np.uint8)


def colour_distance(rgb: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Per pixel, the largest per-channel difference from ``colour`` (0-255)."""
    return np.abs(rgb.astype(np.int16) - colour.astype(np.int16)).max(axis=2)


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


def key_background(rgb: np.ndarray, tolerance: int = 24, softness: int = 48) -> np.ndarray:
    """An RGBA array: ``rgb`` with its border-connected plain background transparent and soft edges.

    ``tolerance``: a pixel within this (per channel, 0-255) of the background colour is background if it
    connects to the border. ``softness``: the shortest alpha ramp (in the same units) of an edge pixel, for
    shapes whose colour is close to the background's.
    """
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    colour = background_colour(rgb, tolerance)
    dist = colour_distance(rgb, colour)
    candidate = dist <= tolerance
    labels, n = label(candidate, connectivity=4)
    outside = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = outside[outside > 0]
    background = np.isin(labels, outside)
    alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
    alpha[background] = 0
    # The edge band: foreground pixels within EDGE px of the outside background.
    band = dilate(background, EDGE) & ~background
    # An edge pixel is a mix of the background and the colour just inside it: its alpha is how far its
    # colour went from the background towards that one (the farthest colour within EDGE px).
    inside = max_filter(np.where(background, 0, dist), EDGE)[band].astype(np.float32)
    span = np.maximum(inside - tolerance, softness)
    ramp = np.clip((dist[band].astype(np.float32) - tolerance) / span, 0.0, 1.0)
    alpha[band] = np.round(ramp * 255).astype(np.uint8)
    out = np.dstack([rgb, alpha])
    partial = band & (alpha > 0) & (alpha < 255)
    if partial.any():
        a = alpha[partial].astype(np.float32)[:, None] / 255.0
        un = (rgb[partial].astype(np.float32) - (1.0 - a) * colour.astype(np.float32)) / a
        out[partial, :3] = np.clip(np.round(un), 0, 255).astype(np.uint8)
    return out


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

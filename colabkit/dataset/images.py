"""Reading the artist's images: what is usable, what is not and why, and one way to get RGB pixels.

``load_rgb`` is the single conversion every consumer uses (checker, taggers, gallery, trainer), so
a transparent line drawing looks the same to all of them: composited onto white, never black.
Nothing here writes or changes the originals.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from colabkit.i18n import _

MIN_SIDE = 512  # shorter side below this is upscaled so much at 1024 px training that it teaches blur
MAX_ASPECT = 4.0  # SDXL aspect buckets stop around 4:1 (2048x512); beyond that most of the image is cropped
MAX_FILE_BYTES = 1 << 30  # no drawing is this big; reading it whole would only fill the RAM
NEAR_DUPLICATE_BITS = 6  # perceptual-hash distance (of 64 bits) at or below which two images look the same

# Files a file manager or sync client leaves behind; never the artist's data, so never reported.
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "icon\r"})
CAPTION_EXTS = frozenset({".txt"})
EXIF_ORIENTATION = 0x0112

# Layered/project files Pillow cannot flatten faithfully: the fix is an export, not a conversion.
_PROJECT_FORMATS = {
    ".psd": "Photoshop",
    ".psb": "Photoshop",
    ".clip": "Clip Studio Paint",
    ".kra": "Krita",
    ".procreate": "Procreate",
    ".xcf": "GIMP",
    ".sai": "PaintTool SAI",
    ".sai2": "PaintTool SAI",
    ".ai": "Illustrator",
    ".svg": "vector",
    ".pdf": "PDF",
    ".heic": "HEIC (iPhone)",
    ".heif": "HEIF",
}


@dataclass(frozen=True)
class ImageInfo:
    """An image that can be trained on. ``notes`` say what ``load_rgb`` does to it."""

    file: Path
    width: int  # as displayed, i.e. after EXIF rotation
    height: int
    mode: str  # as stored in the file
    format: str
    size_bytes: int
    sha256: str
    phash: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file, in words the artist can act on.

    ``rejected`` problems keep the file out of training (and out of tagging); the others are
    warnings (e.g. near-duplicates) about files that are still used.
    """

    file: Path
    kind: str
    reason: str
    fix: str
    rejected: bool = True


@dataclass
class ScanResult:
    accepted: list[ImageInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


# --- pixels --------------------------------------------------------------------------------------


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    # Pillow's convert("L") clips 16-bit values at 255 instead of scaling: a 16-bit scan would come out
    # almost entirely white. Scale the full range down instead.
    arr = np.asarray(img)
    if img.mode == "F":
        top = 1.0 if float(arr.max(initial=0)) <= 1.0 else float(arr.max())
    elif img.mode == "I":
        top = 65535.0 if int(arr.max(initial=0)) <= 65535 else float(arr.max())
    else:  # I;16 variants
        top = 65535.0
    scaled = np.clip(arr.astype(np.float32) * (255.0 / max(top, 1e-6)) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, "L")


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """8-bit RGB with any transparency composited onto ``background`` (white by default).

    Line art is often drawn on a transparent layer; a plain ``convert("RGB")`` drops the alpha and
    leaves whatever colour the transparent pixels happen to hold (usually black), which ruins it.
    """
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_bit_depth_to_l(img)
    if img.mode in ("P", "L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")  # palette / tRNS transparency -> a real alpha channel
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _draft_for(img: Image.Image, long_side: int) -> None:
    # JPEG can decode at 1/2, 1/4 or 1/8 scale in the DCT domain: a 4000 px photo of a drawing decodes
    # ~10x faster when we only need 448 px. Ask for the largest reduction that keeps the long side
    # >= long_side, so the final resize still only ever shrinks.
    if img.format != "JPEG" or long_side <= 0:
        return
    w, h = img.size
    f = long_side / max(w, h)
    if f < 1:
        img.draft(None, (max(1, int(w * f)), max(1, int(h * f))))


def load_rgb(path: str | Path, long_side: int | None = None) -> Image.Image:
    """The image as trained on: EXIF orientation applied, 8-bit RGB, transparency on white.

    ``long_side`` lets JPEGs decode at reduced scale when only a small version is needed; the
    result is then at least that large on its long side (it is not resized here).
    """
    with Image.open(path) as img:
        if long_side:
            _draft_for(img, long_side)
        img = ImageOps.exif_transpose(img)  # also decodes; rotated copy when the tag says so
        return to_rgb(img)


def pad_to_square(img: Image.Image, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Centre ``img`` on a square canvas of its long side (white, as the WD14 taggers were trained)."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


# --- perceptual hash ---------------------------------------------------------------------------

_DCT_N = 32


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(_DCT_N)


def perceptual_hash(img: Image.Image) -> int:
    """64-bit DCT hash: low frequencies above/below their median.

    A median split (rather than comparing neighbouring pixels) keeps about half the bits set even on
    mostly-white line art, so two different sketches do not look alike just because both are sparse.
    """
    small = np.asarray(img.convert("L").resize((_DCT_N, _DCT_N), Image.Resampling.BOX), dtype=np.float64)
    coeffs = (_DCT @ small @ _DCT.T)[:8, :8].flatten()
    bits = coeffs[1:] > np.median(coeffs[1:])  # DC term left out: it is just overall brightness
    return int("".join("1" if b else "0" for b in bits), 2)


def hash_distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# --- listing and checking ----------------------------------------------------------------------


def is_ignored(path: Path) -> bool:
    """Hidden files (including colabkit's own temp files), sync-client leftovers and captions."""
    return path.name.startswith(".") or path.name.lower() in SYSTEM_FILES or path.suffix.lower() in CAPTION_EXTS


def dataset_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(files to check, sub-folders) directly inside ``folder``, sorted; ``_rejected/`` is skipped."""
    files, folders = [], []
    for p in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if p.is_dir():
            if p.name != "_rejected" and not p.name.startswith("."):
                folders.append(p)
        elif not is_ignored(p):
            files.append(p)
    return files, folders


def image_files(folder: Path) -> list[Path]:
    """Files in ``folder`` that may be images (everything not ignored), without opening them."""
    return dataset_files(folder)[0] if folder.is_dir() else []


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block is not worth rejecting the image for
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _notes(img: Image.Image, size: tuple[int, int]) -> tuple[str, ...]:
    notes = []
    if size != img.size:
        notes.append(_("rotated by its EXIF tag"))
    mode = img.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        notes.append(_("transparency composited onto white"))
    if mode == "P":
        notes.append(_("palette converted to RGB"))
    elif mode == "CMYK":
        notes.append(_("CMYK converted to RGB"))
    elif mode.startswith("I") or mode == "F":
        notes.append(_("16-bit scaled to 8-bit RGB"))
    elif mode in ("L", "LA", "1"):
        notes.append(_("greyscale"))
    return tuple(notes)


def _not_image_fix(path: Path) -> str:
    app = _PROJECT_FORMATS.get(path.suffix.lower())
    if app:
        return _("this is a {app} file: export the drawing as PNG (or JPEG) into dataset/.").format(app=app)
    return _("move it out of dataset/ (only PNG, JPEG, WebP and other image files are used).")


def read_bytes(path: Path) -> bytes:
    """The whole file, read once: hashed and decoded from memory (on Drive every read is a download)."""
    return path.read_bytes()


def inspect_file(path: Path, *, min_side: int = MIN_SIDE, max_aspect: float = MAX_ASPECT) -> ImageInfo | Problem:
    """Read one file once, fully decode it; return what it is or what is wrong with it."""
    try:
        size_bytes = path.stat().st_size
        if size_bytes == 0:
            return Problem(path, "empty", _("the file is empty (0 bytes)"),
                           _("upload it again; the copy did not finish."))
        if size_bytes > MAX_FILE_BYTES:
            return Problem(path, "huge", _("the file is {size:.1f} GB, too large for a training image").format(
                size=size_bytes / 2**30),
                _("save a smaller copy (e.g. 4096 px on the long side, PNG or JPEG) and use that instead."))
        data = read_bytes(path)
        with warnings.catch_warnings():
            # Decompression-bomb limits stay on; above Pillow's soft limit we reject rather than warn.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or path.suffix.lstrip(".").upper()
                size = _oriented_size(img)
                if getattr(img, "is_animated", False) and getattr(img, "n_frames", 1) > 1:
                    return Problem(
                        path,
                        "animated",
                        _("animated {format} with {n} frames").format(format=fmt, n=img.n_frames),
                        _("export the frame you want as a PNG and move the animation out of dataset/."),
                    )
                notes = _notes(img, size)
                mode = img.mode
                _draft_for(img, 64)  # the hash needs 32 px; full decode still happens, so truncation shows
                rgb = to_rgb(ImageOps.exif_transpose(img))
                phash = perceptual_hash(rgb)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = Image.MAX_IMAGE_PIXELS or 0
        return Problem(
            path,
            "huge",
            _("too many pixels to open safely (over {megapixels:.0f} megapixels)").format(megapixels=limit / 1e6),
            _("save a smaller copy (e.g. 4096 px on the long side) and use that instead."),
        )
    except UnidentifiedImageError:
        return Problem(path, "not an image", _("not an image file Pillow can read"), _not_image_fix(path))
    except MemoryError:
        return Problem(path, "huge", _("too large to decode in memory"),
                       _("save a smaller copy (e.g. 4096 px long side)."))
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, zlib.error...
        return Problem(
            path,
            "corrupt",
            _("corrupt or truncated ({error})").format(error=f"{type(e).__name__}: {e}"),
            _("open it in your drawing app and export it again, or upload it again if the upload was cut off."),
        )

    w, h = size
    if min(w, h) < min_side:
        return Problem(
            path,
            "too small",
            _("too small to train: {size}, shorter side under {min_side} px").format(size=f"{w}x{h}", min_side=min_side),
            _("export it at a larger size (at least {min_side} px on the short side, ideally 1024+).").format(
                min_side=min_side),
        )
    aspect = max(w, h) / min(w, h)
    if aspect > max_aspect:
        return Problem(
            path,
            "aspect ratio",
            _("extreme aspect ratio {aspect:.1f}:1 ({size})").format(aspect=aspect, size=f"{w}x{h}"),
            _("crop it into parts no longer than {max_aspect:g}:1, or crop to the interesting area.").format(
                max_aspect=max_aspect),
        )
    digest = hashlib.sha256(data).hexdigest()
    return ImageInfo(path, w, h, mode, fmt, size_bytes, digest, phash, notes)


def find_duplicates(images: list[ImageInfo], max_bits: int = NEAR_DUPLICATE_BITS) -> list[Problem]:
    """Exact copies (same bytes; rejected) and look-alikes (close perceptual hash; warnings).

    The first file in name order is kept; later ones are reported against it.
    """
    problems = []
    by_digest: dict[str, ImageInfo] = {}
    kept: list[ImageInfo] = []
    for info in images:
        first = by_digest.get(info.sha256)
        if first is not None:
            problems.append(
                Problem(
                    info.file,
                    "duplicate",
                    _("exact copy of {file}").format(file=first.file.name),
                    _("keep only one copy; {file} is left out of training.").format(file=info.file.name),
                )
            )
            continue
        by_digest[info.sha256] = info
        twin = next((k for k in kept if hash_distance(k.phash, info.phash) <= max_bits), None)
        if twin is not None:
            problems.append(
                Problem(
                    info.file,
                    "near-duplicate",
                    _("looks almost the same as {file}").format(file=twin.file.name),
                    _("keep both only if the difference matters; near-copies make the LoRA memorise that picture."),
                    rejected=False,
                )
            )
        kept.append(info)
    return problems


def caption_clashes(images: list[ImageInfo]) -> list[Problem]:
    """Images whose captions would share one .txt file (``a.png`` and ``a.jpg``)."""
    problems = []
    seen: dict[str, ImageInfo] = {}
    for info in images:
        stem = info.file.stem.lower()
        if stem in seen:
            problems.append(
                Problem(
                    info.file,
                    "name clash",
                    _("same name as {other}, so both would share the caption {caption}").format(
                        other=seen[stem].file.name, caption=f"{info.file.stem}.txt"),
                    _("rename one of them."),
                )
            )
        else:
            seen[stem] = info
    return problems

"""Synthetic dataset folders in every awkward format an artist's upload contains (test helpers).

``make_mixed_folder`` writes a partly broken folder (transparent line art, palette, CMYK, 16-bit,
EXIF-rotated, duplicates, a truncated JPEG, a non-image, an animation, a decompression bomb...) and
returns what the checker should say about each file.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from colabkit.tiny.drawings import drawing

OK = "ok"


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=kw.pop("quality", 90), **kw)
    return buf.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (Pillow refuses to open it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_mixed_folder(folder: str | Path) -> dict[str, str]:
    """Write a partly broken dataset into ``folder``; return {file name: "ok" or the expected problem kind}.

    "near-duplicate" files are still usable (a warning); every other non-"ok" kind is rejected.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def save(name: str, kind: str, img: Image.Image | None = None, data: bytes | None = None, **kw):
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        else:
            img.save(path, **kw)
        expected[name] = kind

    # Line art on a transparent layer: the transparent pixels are black with alpha 0, so dropping
    # the alpha instead of compositing onto white turns the whole picture black.
    save("01_lineart_transparent.png", OK, drawing(1, background=(0, 0, 0, 0)))
    pal = drawing(2, ink=(200, 30, 30, 255), background=(0, 0, 0, 0)).quantize(colors=16)
    save("02_palette.png", OK, pal, transparency=_transparent_index(pal))
    save("03_cmyk.jpg", OK, drawing(3, ink=(20, 60, 160, 255)).convert("RGB").convert("CMYK"), quality=90)
    grey16 = (np.asarray(drawing(4).convert("L"), dtype=np.uint16) // 2) * 257  # mid grey paper, 16-bit
    save("04_sixteen_bit.png", OK, Image.fromarray(grey16))
    rotated = drawing(5, size=(768, 576)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored landscape, shown portrait
    save("05_rotated.jpg", OK, rotated, quality=90, exif=exif.tobytes())
    colour = drawing(6, ink=(30, 140, 60, 255)).convert("RGB")
    save("06_colour.png", OK, colour)
    save("07_greyscale.jpg", OK, drawing(7).convert("L"), quality=90)
    save("08_webp.webp", OK, drawing(8, ink=(120, 40, 160, 255)).convert("RGB"), quality=90)
    save("09_copy_of_06.png", "duplicate", data=(folder / "06_colour.png").read_bytes())
    near = colour.resize((576, 576), Image.Resampling.LANCZOS)
    save("10_near_copy_of_06.jpg", "near-duplicate", near, quality=85)
    save("11_tiny.png", "too small", drawing(11, size=(300, 300)).convert("RGB"))
    save("12_banner.png", "aspect ratio", drawing(12, size=(2600, 600)).convert("RGB"))
    frames = [drawing(13 + i).convert("P") for i in range(2)]
    save("13_animated.gif", "animated", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    whole = jpeg_bytes(drawing(14).convert("RGB"))
    save("14_truncated.jpg", "corrupt", data=whole[: len(whole) // 2])
    save("15_notes.pdf", "not an image", data=b"%PDF-1.4\n% not really a drawing\n")
    save("16_random.dat", "not an image", data=np.random.default_rng(16).bytes(2048))
    save("17_huge.png", "huge", data=bomb_png())
    save("18_empty.png", "empty", data=b"")
    # Left behind by file managers and sync clients: never reported.
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "old_versions").mkdir(exist_ok=True)
    (folder / "old_versions" / "draft.png").write_bytes((folder / "06_colour.png").read_bytes())
    expected["old_versions"] = "folder"
    return expected


def _transparent_index(img: Image.Image) -> int:
    # quantize() maps the transparent black background to some palette entry: find it.
    return int(np.bincount(np.asarray(img).reshape(-1)).argmax())


def folder_checksums(folder: str | Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except captions, by relative path: proof originals are untouched."""
    from colabkit.files import sha256_file

    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".txt"
    }

"""A few small captioned drawings: a project ready to train on tiny-sdxl at 64 px."""

from PIL import Image, ImageDraw


def drawing(i: int, size=(64, 64)) -> Image.Image:
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    w, h = size
    d.ellipse((w * 0.2, h * 0.2, w * 0.8, h * 0.8), outline=(20, 20, 20), width=3)
    d.line((0, h * (i % 5) / 5, w, h - h * (i % 3) / 3), fill=(200, 40 * i % 255, 40), width=2)
    return im


def fill_dataset(project, n: int = 4, size=(64, 64), limits: bool = True) -> None:
    """``n`` small captioned drawings in the project's dataset/, accepted as the artist's dataset check would."""
    from colabkit.dataset.items import save_limits

    project.create()
    for i in range(n):
        drawing(i, size).save(project.dataset / f"d{i}.png")
        (project.dataset / f"d{i}.txt").write_text(f"houtline, outline, tag{i}")
    if limits:
        save_limits(project, 32, 4.0)  # as if checked with min_side 32: these drawings are small

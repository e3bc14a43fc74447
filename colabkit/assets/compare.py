"""Pick the best epoch: one grid, a row per LoRA file, a column without the LoRA then one per LoRA weight, the same
prompts and seeds; the prompt, seed and settings printed under it and kept in its PNG ``parameters`` chunk."""

from __future__ import annotations

import time
from pathlib import Path

from colabkit.errors import ColabkitError
from colabkit.i18n import _

PAD = 6  # pixels around each label
MAX_LABEL_W = 480  # a longer row label is set smaller, then shortened


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def fit_text(draw, text: str, width: int, size: int = 14, smallest: int = 9):
    """(text, font) that fits ``width`` px: the font shrunk down to ``smallest``, then the text cut with '...'."""
    for s in range(size, smallest - 1, -1):
        font = _font(s)
        if draw.textlength(text, font=font) <= width:
            return text, font
    font = _font(smallest)
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "...", font


def wrap(draw, text: str, width: int, font) -> list[str]:
    """``text`` in lines no wider than ``width`` px (words kept whole unless one alone is too wide)."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    return lines + ([line] if line else [])


def header_height() -> int:
    """The height of the grid's row of column labels."""
    return _font(14).getbbox("Ag")[3] + 4 + 2 * PAD


def labelled_grid(cells: list[list], row_labels: list[str], col_labels: list[str], side: int,
                  footer: str = ""):
    """cells[r][c] are PIL pictures, each scaled so its longest side is ``side`` px; rows and columns labelled.

    The row labels' column is as wide as the widest label (measured), up to MAX_LABEL_W px; a column label
    wider than its column is set smaller, then shortened. ``footer`` (the prompt, seed and settings) is
    printed under the grid, wrapped to its width.
    """
    from PIL import Image, ImageDraw

    w0, h0 = cells[0][0].size
    scale = side / max(w0, h0)
    cw, ch = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    cols, rows = len(col_labels), len(row_labels)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _font(14)
    label_w = min(max(measure.textlength(t, font=font) for t in row_labels) + 2 * PAD, MAX_LABEL_W)
    label_w = int(label_w)
    header_h = header_height()
    width = label_w + cols * cw
    foot = wrap(measure, footer, width - 2 * PAD, _font(12)) if footer else []
    foot_h = (len(foot) * (_font(12).getbbox("Ag")[3] + 4) + 2 * PAD) if foot else 0
    grid = Image.new("RGB", (width, header_h + rows * ch + foot_h), "white")
    draw = ImageDraw.Draw(grid)
    for c, text in enumerate(col_labels):
        shown, f = fit_text(draw, text, cw - 2 * PAD)
        draw.text((label_w + c * cw + PAD, PAD), shown, fill="black", font=f)
    for r, text in enumerate(row_labels):
        shown, f = fit_text(draw, text, label_w - 2 * PAD)
        draw.text((PAD, header_h + r * ch + PAD), shown, fill="black", font=f)
        for c in range(cols):
            # enlarged pixels stay sharp (small test sizes, pixel art); shrunk ones are filtered
            resample = Image.NEAREST if cw >= w0 else Image.LANCZOS
            grid.paste(cells[r][c].resize((cw, ch), resample), (label_w + c * cw, header_h + r * ch))
    y = header_h + rows * ch + PAD
    small = _font(12)
    for line in foot:
        draw.text((PAD, y), line, fill=(60, 60, 60), font=small)
        y += small.getbbox("Ag")[3] + 4
    return grid


def compare_epochs(cfg, device: str | None = None) -> Path:
    """Render the epoch grid, save it to output/compare/ on Drive (atomically), show it, return its path."""
    from PIL.PngImagePlugin import PngInfo
    from tqdm.auto import tqdm

    from colabkit import display, files
    from colabkit.assets.config import parse_weights, split_names
    from colabkit.assets.cutout import png_bytes
    from colabkit.assets.generate import find_lora, format_parameters, lora_files, suggested_prompt
    from colabkit.assets.pipeline import load_pipeline, render, use_loras
    from colabkit.project import open_project

    project = open_project(cfg.project_name)
    loras = [find_lora(project, n) for n in split_names(cfg.lora_files)] if cfg.lora_files.strip() \
        else lora_files(project)
    loras = [p for p in loras if p is not None]
    if not loras:
        raise ColabkitError(_("No LoRA files in {output} to compare: train first (notebook 2).").format(
                                output=project.output))
    weights = parse_weights(cfg.lora_weights)
    prompts = [p.strip() for p in cfg.prompt.splitlines() if p.strip()] or \
        [suggested_prompt(loras[-1], project.dataset)]
    display.show_text(_("Prompts: ") + " | ".join(prompts))
    loaded = load_pipeline(cfg.base_model, project.models, cfg.prediction_type, device)
    rows, labels = [], []
    bar = tqdm(total=len(loras) * len(prompts) * len(weights) + (len(prompts) if cfg.no_lora_column else 0),
               desc=_("comparing"), unit=_("picture"))

    def draw(prompt, p):
        return render(loaded, prompt, cfg.negative_prompt, width=cfg.width, height=cfg.height, steps=cfg.steps,
                      guidance_scale=cfg.guidance_scale, seed=cfg.seed + p, sampler=cfg.sampler)

    try:
        base = []
        if cfg.no_lora_column:  # the base model alone, same prompt and seed: what the LoRA adds shows
            use_loras(loaded, {})
            for p, prompt in enumerate(prompts):
                base.append(draw(prompt, p))
                bar.update(1)
        for lora in loras:
            for p, prompt in enumerate(prompts):
                row = [base[p]] if base else []
                for w in weights:
                    use_loras(loaded, {lora: w})
                    row.append(draw(prompt, p))
                    bar.update(1)
                rows.append(row)
                labels.append(lora.stem + (f"  (prompt {p + 1})" if len(prompts) > 1 else ""))
    finally:
        bar.close()
    use_loras(loaded, {})
    columns = ([_("no LoRA")] if cfg.no_lora_column else []) + [_("weight {w}").format(w=f"{w:g}") for w in weights]
    settings = {"Steps": cfg.steps, "Sampler": cfg.sampler, "CFG scale": f"{cfg.guidance_scale:g}",
                "Seed": cfg.seed, "Size": f"{cfg.width}x{cfg.height}", "Model": loaded.checkpoint or loaded.model_name,
                "Model hash": loaded.model_hash, "RNG": "CPU",
                "Compared": ", ".join(p.stem for p in loras), "Weights": ", ".join(f"{w:g}" for w in weights)}
    text = format_parameters("\n".join(prompts), cfg.negative_prompt, settings)
    footer = _("Prompt: {prompt} | Seed: {seed} (+1 for each further prompt) | {settings}").format(
        prompt=" / ".join(prompts), seed=cfg.seed, settings=text.splitlines()[-1])
    grid = labelled_grid(rows, labels, columns, cfg.cell_size, footer)
    info = PngInfo()
    info.add_text("parameters", text)
    path = files.write_bytes(project.output / "compare" / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.png",
                             png_bytes(grid, info))
    display.show_image(path, _("Rows: LoRA files; columns: no LoRA, then LoRA weights (seed {seed}). Pick the file "
                               "and weight whose pictures look most like your drawings without breaking.").format(
                                   seed=cfg.seed), width=900)
    display.show_text(footer)
    return path

"""Pick the best epoch: one grid, a row per LoRA file, a column per LoRA weight, the same prompts and seeds."""

from __future__ import annotations

import time
from pathlib import Path

from colabkit.errors import ColabkitError

LABEL_W, HEADER_H = 200, 28


def labelled_grid(cells: list[list], row_labels: list[str], col_labels: list[str], side: int):
    """cells[r][c] are PIL pictures, each scaled so its longest side is ``side`` px; rows and columns labelled."""
    from PIL import Image, ImageDraw, ImageFont

    w0, h0 = cells[0][0].size
    scale = side / max(w0, h0)
    cw, ch = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    cols, rows = len(col_labels), len(row_labels)
    grid = Image.new("RGB", (LABEL_W + cols * cw, HEADER_H + rows * ch), "white")
    draw = ImageDraw.Draw(grid)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    for c, text in enumerate(col_labels):
        draw.text((LABEL_W + c * cw + 4, 6), text, fill="black", font=font)
    for r, text in enumerate(row_labels):
        draw.text((4, HEADER_H + r * ch + 4), text, fill="black", font=font)
        for c in range(cols):
            # enlarged pixels stay sharp (small test sizes, pixel art); shrunk ones are filtered
            resample = Image.NEAREST if cw >= w0 else Image.LANCZOS
            grid.paste(cells[r][c].resize((cw, ch), resample), (LABEL_W + c * cw, HEADER_H + r * ch))
    return grid


def compare_epochs(cfg, device: str | None = None) -> Path:
    """Render the epoch grid, save it to output/compare/ on Drive (atomically), show it, return its path."""
    from tqdm.auto import tqdm

    from colabkit import display, files
    from colabkit.assets.config import parse_weights, split_names
    from colabkit.assets.cutout import png_bytes
    from colabkit.assets.generate import find_lora, lora_files, suggested_prompt
    from colabkit.assets.pipeline import load_pipeline, render, use_loras
    from colabkit.project import open_project

    project = open_project(cfg.project_name)
    loras = [find_lora(project, n) for n in split_names(cfg.lora_files)] if cfg.lora_files.strip() \
        else lora_files(project)
    loras = [p for p in loras if p is not None]
    if not loras:
        raise ColabkitError(f"No LoRA files in {project.output} to compare: train first (notebook 2).")
    weights = parse_weights(cfg.lora_weights)
    prompts = [p.strip() for p in cfg.prompt.splitlines() if p.strip()] or \
        [suggested_prompt(loras[-1], project.dataset)]
    display.show_text("Prompts: " + " | ".join(prompts))
    loaded = load_pipeline(cfg.base_model, project.models, cfg.prediction_type, device)
    rows, labels = [], []
    bar = tqdm(total=len(loras) * len(weights) * len(prompts), desc="comparing", unit="picture")
    try:
        for lora in loras:
            for p, prompt in enumerate(prompts):
                row = []
                for w in weights:
                    use_loras(loaded, {lora: w})
                    row.append(render(loaded, prompt, cfg.negative_prompt, width=cfg.width, height=cfg.height,
                                      steps=cfg.steps, guidance_scale=cfg.guidance_scale, seed=cfg.seed + p,
                                      sampler=cfg.sampler))
                    bar.update(1)
                rows.append(row)
                labels.append(lora.stem + (f"  (prompt {p + 1})" if len(prompts) > 1 else ""))
    finally:
        bar.close()
    use_loras(loaded, {})
    grid = labelled_grid(rows, labels, [f"weight {w:g}" for w in weights], cfg.cell_size)
    path = files.write_bytes(project.output / "compare" / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.png",
                             png_bytes(grid))
    display.show_image(path, f"Rows: LoRA files; columns: LoRA weight (seed {cfg.seed}). Pick the file and weight "
                       "whose pictures look most like your drawings without breaking.", width=900)
    return path

"""Generate pictures with the LoRA; each PNG carries its settings in A1111's ``parameters`` text chunk.

A1111's PNG Info, Forge, Civitai's uploader and ComfyUI-Manager read that chunk: the prompt, a
``Negative prompt:`` line, then one line of ``Key: value`` pairs (values with ``,`` ``:`` or a new line
JSON-quoted), e.g. ``Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 1024x1024,
Model: sd_xl_base_1.0, Lora hashes: "houtline: 0123456789ab", RNG: CPU, Version: colabkit 0.x``.

``RNG: CPU``: the starting noise comes from a CPU generator (the same on any GPU), and A1111 reads this to
make its noise the same way. ``Model`` is the checkpoint file's name without extension, as A1111 writes it.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from colabkit.errors import ColabkitError
from colabkit.i18n import _

# A1111's modules/infotext_utils.py: one "Key: value" pair, the value JSON-quoted or up to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def quote(value) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def format_parameters(prompt: str, negative_prompt: str, params: dict) -> str:
    """The ``parameters`` text exactly as A1111 writes it (``None`` values left out)."""
    line = ", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None)
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{line}".strip()


def parse_parameters(text: str) -> dict[str, str]:
    """A1111's ``parameters`` text -> {"prompt", "negative_prompt", and each key: its value as text}."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:  # A1111's rule: the settings line has at least three pairs
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    out = {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative)}
    for key, value in _PARAM.findall(last):
        if len(value) > 1 and value[0] == '"' and value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


def read_parameters(path: str | Path) -> dict[str, str]:
    """The settings a PNG was made with (its ``parameters`` chunk), parsed; {} when it has none."""
    from PIL import Image

    with Image.open(path) as im:
        text = im.info.get("parameters")
    return parse_parameters(text) if text else {}


# -- the LoRA's own facts: tags, activation word, hash ----------------------------------------------------------

def lora_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise ColabkitError(_("{path} is not a readable .safetensors LoRA ({text}). Pick another file in output/, "
                              "or train again.").format(path=path, text=str(e)[:160])) from None


def lora_hash(path: Path, metadata: dict[str, str]) -> str:
    """A1111's short LoRA hash: the first 12 hex digits of the file's sshs_model_hash."""
    from colabkit.train.lora.metadata import file_model_hash

    return file_model_hash(path, metadata)[:12]


def tag_frequency(metadata: dict[str, str]) -> dict[str, int]:
    """ss_tag_frequency ({folder: {tag: count}}) merged over folders, most frequent first."""
    try:
        folders = json.loads(metadata.get("ss_tag_frequency") or "{}")
    except ValueError:
        return {}
    freq: dict[str, int] = {}
    for tags in folders.values() if isinstance(folders, dict) else ():
        for tag, n in (tags.items() if isinstance(tags, dict) else ()):
            freq[tag.strip()] = freq.get(tag.strip(), 0) + int(n)
    return dict(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0])))


def caption_frequency(dataset: Path) -> tuple[str, dict[str, int]]:
    """(activation tag, tag frequency) from the project's captions: the fallback when a LoRA has no metadata."""
    from colabkit.dataset.captions import count_tags, split_tags
    from colabkit.dataset.items import folders

    # The training set's own folders (dataset/ and its <repeats>_<name>/ sub-folders): one definition, items.py.
    captions = [split_tags(p.read_text(encoding="utf-8", errors="replace"))
                for folder in folders(dataset)[0] for p in sorted(folder.path.glob("*.txt"))]
    firsts = count_tags([tags[:1] for tags in captions])
    activation = firsts[0][0] if firsts and firsts[0][1] * 2 > len(captions) else ""
    return activation, dict(count_tags(captions))


def suggested_prompt(lora: Path | None, dataset: Path | None) -> str:
    """The activation tag plus the dataset's most frequent tags (from the LoRA's metadata, else the captions)."""
    from colabkit.train.sample import default_prompts

    meta = lora_metadata(lora) if lora else {}
    activation, freq = meta.get("modelspec.trigger_phrase", ""), tag_frequency(meta)
    if (not freq or not activation) and dataset is not None and dataset.is_dir():
        cap_activation, cap_freq = caption_frequency(dataset)
        activation, freq = activation or cap_activation, freq or cap_freq
    prompts = default_prompts(activation, freq, n=1)
    return prompts[0] if prompts else "simple background, white background"


def find_lora(project, name: str) -> Path | None:
    """``name`` in output/ (with or without .safetensors) or a path; "": the final file, else the newest epoch."""
    if name.strip().lower() == "none":
        return None
    if name.strip():
        for candidate in (Path(name).expanduser(), project.output / name, project.output / f"{name}.safetensors"):
            if candidate.is_file():
                return candidate
        found = ", ".join(p.name for p in lora_files(project)) or "none yet"
        raise ColabkitError(_("No LoRA file {name!r} in {output} (files there: {found}). Use one of those names, a "
                              "full path, or leave it empty for the final file.").format(
                                name=name, output=project.output, found=found))
    files = lora_files(project)
    final = project.output / f"{project.slug}.safetensors"
    if final.is_file():
        return final
    if files:
        return files[-1]
    raise ColabkitError(_("No LoRA files in {output} yet: train first (notebook 2), or set lora_file to 'none' to "
                          "generate with the base model alone.").format(output=project.output))


def lora_files(project) -> list[Path]:
    """The project's LoRA files: per-epoch files in epoch order, then the final one (the run's own names)."""
    from colabkit.train.outputs import run_loras

    return run_loras(project)


# -- the step --------------------------------------------------------------------------------------------------

def a1111_lora_alias(name: str) -> str:
    """A LoRA's name as A1111 writes it in ``Lora hashes``: its ``:`` and ``,`` removed (they separate the
    field's ``name: hash`` pairs)."""
    return name.translate(str.maketrans("", "", ":,"))


def generation_params(cfg, seed: int, model: str, model_hash: str | None, lora_note: str | None) -> dict:
    """The settings line of one picture, in A1111's order and spelling."""
    from colabkit import __version__

    return {"Steps": cfg.steps, "Sampler": cfg.sampler, "CFG scale": f"{cfg.guidance_scale:g}", "Seed": seed,
            "Size": f"{cfg.width}x{cfg.height}", "Model hash": model_hash, "Model": model,
            "Tiling": "True" if getattr(cfg, "seamless", False) else None, "Lora hashes": lora_note,
            "RNG": "CPU", "Version": f"colabkit {__version__}"}


def next_number(folder: Path) -> int:
    numbers = [int(m[1]) for p in folder.glob("*.png") if (m := re.match(r"(\d{5})-", p.name))]
    return max(numbers, default=-1) + 1


def generate_images(cfg, device: str | None = None) -> list[Path]:
    """Render ``cfg.num_images`` pictures into output/generated/ (numbered, never overwriting), show them as a grid."""
    from PIL.PngImagePlugin import PngInfo
    from tqdm.auto import tqdm

    from colabkit import display, files
    from colabkit.assets.cutout import png_bytes
    from colabkit.assets.pipeline import load_pipeline, render, seamless, use_loras
    from colabkit.project import open_project
    from colabkit.train.sample import make_grid

    project = open_project(cfg.project_name)
    lora = find_lora(project, cfg.lora_file)
    prompt = cfg.prompt.strip() or suggested_prompt(lora, project.dataset)
    if not cfg.prompt.strip():
        display.show_text(_("Prompt (from your LoRA's tags): {prompt}").format(prompt=prompt))
    loaded = load_pipeline(cfg.base_model, project.models, cfg.prediction_type, device)
    use_loras(loaded, {lora: cfg.lora_scale} if lora else {})
    seed = cfg.seed if cfg.seed >= 0 else random.randrange(2**32 - cfg.num_images)
    folder = project.output / "generated"
    number = next_number(folder)
    w, h = cfg.width, cfg.height
    lora_note = None
    shown_prompt = prompt
    if lora is not None:
        meta = lora_metadata(lora)
        lora_note = f"{a1111_lora_alias(lora.stem)}: {lora_hash(lora, meta)}"
        # as typed in A1111: pasting the text there gives the same settings (A1111's own sampler code and
        # float16 maths still draw a slightly different picture)
        shown_prompt = f"{prompt} <lora:{lora.stem}:{cfg.lora_scale:g}>"
    paths, images = [], []
    with seamless(loaded.pipe, cfg.seamless):
        for i in tqdm(range(cfg.num_images), desc=_("generating"), unit=_("picture")):
            image = render(loaded, prompt, cfg.negative_prompt, width=w, height=h, steps=cfg.steps,
                           guidance_scale=cfg.guidance_scale, seed=seed + i, sampler=cfg.sampler)
            params = generation_params(cfg, seed + i, loaded.checkpoint or loaded.model_name, loaded.model_hash,
                                       lora_note)
            info = PngInfo()
            info.add_text("parameters", format_parameters(shown_prompt, cfg.negative_prompt, params))
            path = files.write_bytes(folder / f"{number + i:05d}-{seed + i}.png", png_bytes(image, info))
            paths.append(path)
            images.append(image)
    cols = min(len(images), 4)
    grid = files.write_bytes(folder / "grids" / f"{number:05d}-{number + len(images) - 1:05d}.png",
                             png_bytes(make_grid([im.copy() for im in images], cols=cols)))
    display.show_image(grid, _("{n_paths} pictures in {folder} (seeds {seed}-{value})").format(
                                 n_paths=len(paths), folder=folder, seed=seed, value=seed + len(paths) - 1), width=900)
    return paths

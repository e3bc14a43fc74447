"""BLIP photo captions via transformers (``Salesforce/blip-image-captioning-large`` or ``-base``).

Beam search with min/max caption length; fp16 on a GPU (a T4 has no bf16), fp32 on CPU.
"""

from __future__ import annotations

import functools
import re
import typing
from pathlib import Path

from colabkit.dataset.config import BlipModel
from colabkit.dataset.images import load_rgb
from colabkit.errors import ColabkitError
from colabkit.i18n import _

TINY_BLIP_NAME = "tiny-blip"
KNOWN_CAPTIONERS = tuple(n for n in typing.get_args(BlipModel) if n != TINY_BLIP_NAME)
DEFAULT_CAPTIONER = KNOWN_CAPTIONERS[0]

# BLIP-large often starts captions with made-up words ("arafed", "araffe") learned from noisy
# alt-text; they mean nothing and would end up as tokens the LoRA trains on.
_ARTIFACTS = re.compile(r"\b(?:ar+af+\w*|there is|there are)\b\s*", re.IGNORECASE)


def clean_caption(text: str) -> str:
    text = _ARTIFACTS.sub("", text)
    return " ".join(text.split()).strip(" ,.")


def resolve_captioner(name: str) -> str:
    """A local folder, the built-in ``tiny-blip``, or a hub repo id, as ``from_pretrained`` takes it."""
    name = (name or "").strip()
    if name == TINY_BLIP_NAME:
        from colabkit.tiny.blip import tiny_blip_path

        return str(tiny_blip_path())
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ColabkitError(_(
                "The caption model folder {folder} has no config.json. Use a folder saved with save_pretrained "
                "(model and processor), or a hub name such as {example}.").format(folder=local, example=DEFAULT_CAPTIONER))
        return str(local)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not name.startswith((".", "~")):
        return name
    raise ColabkitError(_(
        "Unknown caption_model {name!r}. Use {known}, another BLIP repo on the hub, a local folder with a saved BLIP "
        "model and processor, or the built-in '{tiny}' (offline, CPU, random weights: for trying the flow).").format(
        name=name, known=" / ".join(KNOWN_CAPTIONERS), tiny=TINY_BLIP_NAME))


class BlipCaptioner:
    def __init__(self, source: str, device: str | None = None):
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        from colabkit.offline import builtin_hint, no_network_reason

        remote = not Path(source).is_dir()
        try:
            self.processor = BlipProcessor.from_pretrained(source, local_files_only=remote)
            self.model = BlipForConditionalGeneration.from_pretrained(source, dtype=self.dtype,
                                                                      local_files_only=remote)
            remote = False  # found in the local cache: no network needed
        except (OSError, ValueError) as e:  # not found, offline, not a BLIP checkpoint
            if not remote:
                raise ColabkitError(_(
                    "Could not load the caption model {source!r} ({error}). Check caption_model, or use a local "
                    "folder with a saved BLIP model and processor.").format(source=source, error=f"{type(e).__name__}: {e}")
                    + " " + builtin_hint("caption_model")) from None
        if remote:
            reason = no_network_reason()
            if reason:  # said at once, instead of the hub's retries and then a traceback
                raise ColabkitError(_(
                    "The caption model {source} is not downloaded yet and {reason}. Connect to the internet, or use a "
                    "local folder with a saved BLIP model and processor.").format(source=source, reason=reason)
                    + " " + builtin_hint("caption_model"))
            try:
                self.processor = BlipProcessor.from_pretrained(source)
                self.model = BlipForConditionalGeneration.from_pretrained(source, dtype=self.dtype)
            except (OSError, ValueError) as e:  # not found, not a BLIP checkpoint, network cut mid-way
                raise ColabkitError(_(
                    "Could not load the caption model {source!r} ({error}). Check caption_model and the internet "
                    "connection, or use a local folder with a saved BLIP model and processor.").format(
                    source=source, error=f"{type(e).__name__}: {e}") + " " + builtin_hint("caption_model")) from None
        self.model.to(self.device).eval()
        size = getattr(self.processor.image_processor, "size", None) or {}
        self.image_size = int(size.get("height") or size.get("shortest_edge") or 384)

    def load(self, path: Path):
        """Decode + preprocess one file into pixel values (runs on the loader threads)."""
        img = load_rgb(path, long_side=self.image_size)
        return self.processor(images=img, return_tensors="pt")["pixel_values"][0]

    def caption(self, pixel_values, *, num_beams: int = 3, min_length: int = 5, max_length: int = 40) -> list[str]:
        import torch

        with torch.inference_mode():
            out = self.model.generate(
                pixel_values=pixel_values.to(self.device, self.dtype),
                num_beams=num_beams,
                min_length=min_length,
                max_length=max_length,
                do_sample=False,  # beam search is deterministic: the same images give the same captions
            )
        return [clean_caption(t) for t in self.processor.batch_decode(out, skip_special_tokens=True)]


@functools.lru_cache(maxsize=1)
def _load_cached(source: str, device: str | None) -> BlipCaptioner:
    from colabkit.display import quiet_library_notices

    with quiet_library_notices():  # e.g. "BlipImageProcessor requires torchvision": the PIL fallback is fine
        return BlipCaptioner(source, device)


def load_captioner(caption_model: str, device: str | None = None) -> BlipCaptioner:
    """Load once per runtime (re-running the notebook cell reuses the model)."""
    return _load_cached(resolve_captioner(caption_model), device)


def unload_captioner() -> None:
    _load_cached.cache_clear()

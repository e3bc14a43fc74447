"""WD14 anime taggers (SmilingWolf's ONNX models) run with onnxruntime, preprocessed as trained.

Recipe the v3 models were trained with (and that ``preprocess`` reproduces): transparency onto
white, centred white padding to a square, resize to the model's input size (read from the ONNX
graph, 448 for v3), float32 in 0-255 (no normalisation), **BGR** channel order, NHWC layout. The
output is already a probability per row of ``selected_tags.csv`` (the graph ends in a sigmoid).
"""

from __future__ import annotations

import csv
import functools
import re
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from colabkit.dataset.captions import wd14_tag_text
from colabkit.dataset.config import WD14Model
from colabkit.dataset.images import load_rgb, pad_to_square
from colabkit.errors import ColabkitError
from colabkit.i18n import _

HUB_OWNER = "SmilingWolf"
TINY_TAGGER_NAME = "tiny-wd14"
KNOWN_TAGGERS = tuple(n for n in typing.get_args(WD14Model) if n != TINY_TAGGER_NAME)  # SmilingWolf's v3 names
DEFAULT_TAGGER = KNOWN_TAGGERS[0]
MODEL_FILE = "model.onnx"
TAGS_FILE = "selected_tags.csv"

RATING, GENERAL, CHARACTER = 9, 0, 4


@dataclass(frozen=True)
class TagScore:
    tag: str  # caption text (underscores already turned into spaces where they should be)
    score: float
    category: int


def resolve_tagger(name: str) -> Path:
    """A folder holding ``model.onnx`` and ``selected_tags.csv`` for ``tagger_model``.

    Accepts a local folder (or its model.onnx), the built-in ``tiny-wd14``, one of
    SmilingWolf's v3 names, or any ``owner/repo`` on the Hugging Face hub.
    """
    name = (name or "").strip()
    if name == TINY_TAGGER_NAME:
        from colabkit.tiny.tagger import tiny_tagger_path

        return tiny_tagger_path()
    local = Path(name).expanduser()
    if local.is_file() and local.suffix == ".onnx":
        local = local.parent
    if local.is_dir():
        missing = [f for f in (MODEL_FILE, TAGS_FILE) if not (local / f).is_file()]
        if missing:
            raise ColabkitError(_(
                "The tagger folder {folder} has no {missing}. A WD14 tagger folder needs both {model} and {tags} (as "
                "in the {repo} repository).").format(folder=local, missing=" / ".join(missing), model=MODEL_FILE,
                                                     tags=TAGS_FILE, repo=f"SmilingWolf/{DEFAULT_TAGGER}"))
        return local
    if name in KNOWN_TAGGERS:
        return _download(f"{HUB_OWNER}/{name}")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not name.startswith((".", "~")):
        return _download(name)
    raise ColabkitError(_(
        "Unknown tagger_model {name!r}. Use one of {known}, a Hugging Face repo such as '{example}', a folder "
        "containing {model} and {tags}, or the built-in '{tiny}' (offline, CPU, random weights: for trying the "
        "flow).").format(name=name, known=", ".join(KNOWN_TAGGERS), example=f"{HUB_OWNER}/{DEFAULT_TAGGER}",
                         model=MODEL_FILE, tags=TAGS_FILE, tiny=TINY_TAGGER_NAME))


def _download(repo_id: str) -> Path:
    from huggingface_hub import hf_hub_download

    from colabkit.offline import builtin_hint, no_network_reason

    try:  # downloaded before (this runtime or HF_HOME on Drive): no network needed
        model = hf_hub_download(repo_id, MODEL_FILE, local_files_only=True)
        hf_hub_download(repo_id, TAGS_FILE, local_files_only=True)
        return Path(model).parent
    except Exception:
        pass
    reason = no_network_reason()
    if reason:  # said at once, instead of huggingface_hub's retries and then a traceback
        raise ColabkitError(_(
            "The tagger {repo} is not downloaded yet and {reason}. Connect to the internet, or point tagger_model at "
            "a folder with {model} and {tags}.").format(repo=repo_id, reason=reason, model=MODEL_FILE, tags=TAGS_FILE)
            + " " + builtin_hint("tagger_model"))
    try:
        model = hf_hub_download(repo_id, MODEL_FILE)
        hf_hub_download(repo_id, TAGS_FILE)
    except Exception as e:  # offline, typo, gated repo: all fixable by the user
        raise ColabkitError(_(
            "Could not download the tagger {repo} ({error}). Check tagger_model and the internet connection, or "
            "point tagger_model at a folder with {model} and {tags}.").format(
            repo=repo_id, error=f"{type(e).__name__}: {e}", model=MODEL_FILE, tags=TAGS_FILE)
            + " " + builtin_hint("tagger_model")) from None  # the message has it all; the hub's chained traceback would only bury it
    return Path(model).parent  # both files land in the same snapshot folder


def read_selected_tags(path: Path) -> tuple[list[str], np.ndarray]:
    """(tag names, categories) from ``selected_tags.csv`` (``tag_id,name,category,count``)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"name", "category"} <= set(rows[0]):
        raise ColabkitError(_("{path} is not a WD14 selected_tags.csv (expected columns {columns}).").format(
            path=path, columns="tag_id,name,category,count"))
    try:
        return [r["name"] for r in rows], np.array([int(r["category"]) for r in rows])
    except (TypeError, ValueError) as e:
        raise ColabkitError(_("{path} has a row with a non-numeric category ({error}); download the file again.").format(
            path=path, error=e)) from e


def onnx_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it (onnxruntime-gpu), CPU always as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        if hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu finds CUDA/cuDNN from the pip packages torch already installed on Colab.
            try:
                ort.preload_dlls()
            except Exception:
                pass
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class WD14Tagger:
    """One loaded tagger: an onnxruntime session plus its tag list."""

    def __init__(self, folder: Path, providers: list[str] | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.names, self.categories = read_selected_tags(self.folder / TAGS_FILE)
        self.tags = [wd14_tag_text(n) for n in self.names]
        try:
            self.session = ort.InferenceSession(str(self.folder / MODEL_FILE), providers=providers or onnx_providers())
        except Exception as e:
            raise ColabkitError(_(
                "onnxruntime could not load {path} ({error}). The file may be incomplete: delete it and download "
                "again.").format(path=self.folder / MODEL_FILE, error=e)) from e
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        # WD14 graphs are NHWC with 3 channels; height and width come from the graph, never assumed.
        if len(shape) != 4 or shape[3] != 3 or not all(isinstance(s, int) for s in shape[1:3]):
            raise ColabkitError(_("{path} has input shape {shape}; a WD14 tagger takes [batch, H, W, 3].").format(
                path=self.folder / MODEL_FILE, shape=shape))
        self.height, self.width = shape[1], shape[2]
        # A graph exported with batch fixed to 1 must be fed one image at a time.
        self.max_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        out = self.session.get_outputs()[0]
        n_out = out.shape[-1] if out.shape else None
        if isinstance(n_out, int) and n_out != len(self.names):
            raise ColabkitError(_(
                "{folder}: the model has {outputs} outputs but {tags_file} lists {tags} tags; the two files come from "
                "different taggers.").format(folder=self.folder, outputs=n_out, tags_file=TAGS_FILE, tags=len(self.names)))

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def input_size(self) -> int:
        return self.height

    def vocabulary(self, categories: tuple[int, ...] = (GENERAL, CHARACTER)) -> list[str]:
        """Every tag the tagger can emit in these categories (caption spelling)."""
        return [t for t, c in zip(self.tags, self.categories) if c in categories]

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """RGB image -> HxWx3 float32, BGR, 0-255, white-padded to a centred square."""
        if img.mode != "RGB":
            raise ValueError("preprocess expects the RGB image from images.load_rgb (transparency already on white)")
        square = pad_to_square(img)
        if square.size != (self.width, self.height):
            # Bicubic with a box pre-reduction for big shrinks: close to the area resize used in training.
            square = square.resize((self.width, self.height), Image.Resampling.BICUBIC, reducing_gap=3.0)
        # RGB -> BGR (as the models were trained) and to float32 in one contiguous copy.
        return np.asarray(square)[:, :, ::-1].astype(np.float32, order="C")

    def load(self, path: Path) -> np.ndarray:
        """Decode + preprocess one file (runs on the loader threads)."""
        return self.preprocess(load_rgb(path, long_side=max(self.height, self.width)))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] float32 -> [N, tags] probabilities (no sigmoid needed: the graph has it)."""
        if self.max_batch and len(batch) > self.max_batch:
            return np.concatenate([self.predict(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)])
        return self.session.run(None, {self.input_name: batch})[0]

    def select(
        self,
        probs: np.ndarray,
        tag_threshold: float = 0.35,
        character_threshold: float = 0.85,
        include_rating: bool = False,
    ) -> list[TagScore]:
        """Tags for one image, most confident first.

        General tags at ``>= tag_threshold``, characters at ``>= character_threshold`` (a threshold
        above 1 switches them off: probabilities never exceed 1), the single most likely rating
        only when ``include_rating``.
        """
        probs = np.asarray(probs, dtype=np.float64)
        keep = ((self.categories == GENERAL) & (probs >= tag_threshold)) | (
            (self.categories == CHARACTER) & (probs >= character_threshold)
        )
        idx = [int(i) for i in np.flatnonzero(keep)]
        if include_rating:
            ratings = np.flatnonzero(self.categories == RATING)
            if len(ratings):
                idx.append(int(ratings[np.argmax(probs[ratings])]))
        idx.sort(key=lambda i: -probs[i])  # stable: equal scores keep the CSV order
        return [TagScore(self.tags[i], float(probs[i]), int(self.categories[i])) for i in idx]


@functools.lru_cache(maxsize=1)  # one tagger in memory at a time: switching models frees the old one
def _load_cached(folder: str, stamp: int, providers: tuple[str, ...]) -> WD14Tagger:
    return WD14Tagger(Path(folder), list(providers))


def load_tagger(tagger_model: str) -> WD14Tagger:
    """Load (once per runtime; re-running a notebook cell reuses the session) the named tagger."""
    folder = resolve_tagger(tagger_model).resolve()
    stamp = (folder / MODEL_FILE).stat().st_mtime_ns  # a replaced model file is loaded afresh
    return _load_cached(str(folder), stamp, tuple(onnx_providers()))


def unload_tagger() -> None:
    """Free the session (and its GPU memory) before training in the same runtime."""
    _load_cached.cache_clear()

"""``base_model`` -> a file or folder on disk that is an SDXL: presets, URLs, paths, and the built-in tiny-sdxl."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from colabkit.errors import ColabkitError
from colabkit.offline import offline
from colabkit.train.models import download as dl
from colabkit.train.models.checkpoint import (PICKLE_SUFFIXES, SUGGESTION, CheckpointInfo, _FAMILY_WORDS,
                                              inspect_checkpoint, param_counts, read_safetensors_shapes)
from colabkit.train.models.presets import EPSILON, PRESETS, Preset, find_preset, normalize_prediction_type
from colabkit.i18n import _

Kind = Literal["diffusers", "single_file"]
# builtin: tiny-sdxl; path: the user's own file/folder; cache: a preset/URL file already downloaded (Drive or
# local cache); download: a preset/URL that had to be (download=True) or still has to be (download=False) fetched.
Source = Literal["builtin", "path", "cache", "download"]
_MODEL_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # for people: the preset's name, the file's name, "tiny-sdxl"
    kind: Kind
    path: Path  # the folder or file; for a download not made yet (download=False), where it will be
    prediction_type: str  # "epsilon" or "v_prediction": explicit choice > the file's own hint > preset > epsilon
    source: Source
    preset: Preset | None = None
    url: str | None = None  # redacted (no tokens), for display
    info: CheckpointInfo | None = None  # header facts of a single file (None for folders and not-yet-downloaded)
    zero_terminal_snr: bool = False
    present: bool = True  # False only with download=False when the file still has to be downloaded
    sha256: str | None = None  # known (published or verified) hash of the single file
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        where = {"builtin": "built in", "path": str(self.path), "cache": f"already downloaded: {self.path}",
                 "download": f"to download to {self.path}"}[self.source]
        return f"{self.name} ({self.kind}, {self.prediction_type}; {where})"


def local_models_dir() -> Path:
    return dl.cache_dir() / "models"


def resolve_base_model(base_model: str, *, models_dir: Path | None = None, keep_on_drive: bool = True,
                       download: bool = True, progress: bool | dl.ProgressFn = True,
                       prediction_type: str | None = None, check_url: bool = True) -> ResolvedModel:
    """Turn ``base_model`` into a checked SDXL on disk, downloading it when needed (and allowed).

    ``base_model``: a preset name (see PRESETS; aliases like 'pony' work), an http(s) URL of a single-file
    checkpoint, a path to a ``.safetensors`` / ``.ckpt`` or a diffusers folder, or 'tiny-sdxl'.
    ``models_dir``: where downloads are kept when ``keep_on_drive`` (the lead passes Project.models, i.e.
    MyDrive/Loras/_models/); otherwise they go to the local cache and are gone with the runtime.
    ``download=False``: check only (preflight): preset known, URL well-formed and (unless offline or
    ``check_url=False``) answering a short HEAD request, file present and SDXL. Nothing is downloaded.
    ``prediction_type``: 'epsilon' / 'v_prediction' to override detection; None or 'auto' to detect.
    Raises ColabkitError with the reason and the fix.
    """
    choice = normalize_prediction_type(prediction_type)
    text = (base_model or "").strip()
    if not text:
        raise ColabkitError(_("base_model is empty. ") + _options())
    from colabkit.tiny.sdxl import TINY_SDXL_NAME, tiny_sdxl_path

    if text.lower() == TINY_SDXL_NAME:
        return ResolvedModel(name=TINY_SDXL_NAME, kind="diffusers", path=tiny_sdxl_path(),
                             prediction_type=choice or EPSILON, source="builtin")
    preset = find_preset(text)
    if preset is not None:
        return _resolve_remote(preset.name, list(preset.urls), preset.filename, preset=preset, choice=choice,
                               models_dir=models_dir, keep_on_drive=keep_on_drive, download=download,
                               progress=progress, check_url=check_url)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.I):
        url = _normalize_url(text)
        name = _filename_for(url)
        return _resolve_remote(name, [url], name, preset=None, choice=choice, models_dir=models_dir,
                               keep_on_drive=keep_on_drive, download=download, progress=progress,
                               check_url=check_url)
    return _resolve_path(text, choice)


def _options() -> str:
    names = ", ".join(f"'{n}'" for n in PRESETS)
    return (f"Use a preset ({names}), an https:// link to a single-file .safetensors, a path to a .safetensors "
            "or a diffusers folder (e.g. on Drive: /content/drive/MyDrive/...), or 'tiny-sdxl' for a quick test.")


def _normalize_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ColabkitError(_("{url} is not an http(s) link. ").format(url=dl.redact(url)) + _options())
    host = parts.hostname.lower()
    path = parts.path
    if host in ("huggingface.co", "hf.co") and "/blob/" in path:
        # The page of a file, copied from the browser: the file itself is at /resolve/.
        path = path.replace("/blob/", "/resolve/", 1)
    if host in ("huggingface.co", "hf.co") and "/tree/" in path:
        raise ColabkitError(_("{url} is a Hugging Face folder page. Link the .safetensors file itself (its "
                              "'download' link, .../resolve/main/<file>.safetensors).").format(url=dl.redact(url)))
    if host in ("civitai.com", "www.civitai.com") and path.startswith("/models/"):
        raise ColabkitError(_("{url} is a Civitai model page, not a download. On the page, copy the Download "
                              "button's link (https://civitai.com/api/download/models/<version id>).").format(
                                url=dl.redact(url)))
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _filename_for(url: str) -> str:
    """A stable file name for a URL: its own file name when it has one, else one derived from the URL."""
    base = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base)
    if base.lower().endswith(_MODEL_SUFFIXES) and len(base) <= 200:
        return base
    # e.g. https://civitai.com/api/download/models/290640?type=Model&format=SafeTensor&token=...: the query picks
    # the variant, so it counts, but tokens do not (a new token must not mean a new 7 GB download).
    bare = dl.redact(urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(fragment="")))
    return f"download-{hashlib.sha256(bare.encode()).hexdigest()[:12]}.safetensors"


def _resolve_remote(name: str, urls: list[str], filename: str, *, preset: Preset | None, choice: str | None,
                    models_dir: Path | None, keep_on_drive: bool, download: bool, progress,
                    check_url: bool) -> ResolvedModel:
    """A preset or URL: reuse a finished copy (this runtime's local disk first, then Drive), else download.

    Downloads go to the local disk (fast, and appending to a 7 GB file on Drive's FUSE mount would make Drive upload
    it again and again); the verified file is then copied to ``models_dir`` when ``keep_on_drive``, so the next day
    (a fresh runtime, empty local disk) finds it there. Loading reads the local copy when there is one.
    """
    size = preset.size if preset else None
    sha = preset.sha256 if preset else None
    local = local_models_dir() / filename
    drive = Path(models_dir).expanduser() / filename if models_dir is not None else None
    keep = drive if keep_on_drive else None

    def finished(path: Path | None) -> Path | None:
        if path is None:
            return None
        if path.is_file():
            return path
        if path.suffix == ".safetensors" and path.with_suffix(".ckpt").is_file():  # a link that gave a pickle
            return path.with_suffix(".ckpt")
        return None

    existing = finished(local) or finished(drive)
    if existing is None and not download:
        part = local.with_name(local.name + ".part")
        notes = list(_check_remote(urls[0], check_url))
        if part.is_file() and size:
            notes.append(_("{value:.0f}% downloaded earlier in this runtime; it continues").format(
                             value=100 * part.stat().st_size / size))
        return ResolvedModel(name=name, kind="single_file", path=keep or local,
                             prediction_type=choice or (preset.prediction_type if preset else EPSILON),
                             source="download", preset=preset, url=dl.redact(urls[0]), present=False,
                             sha256=sha, notes=tuple(notes))
    source: Source = "cache"
    if existing is None:
        existing = _download_any(urls, local, size=size, sha256=sha, progress=progress)
        source = "download"
    else:
        # Cheap checks always; the 7 GB hash only once per file (then the .verified marker vouches for it), and
        # never in a preflight (download=False), which must stay fast.
        dl.verify_file(existing, size=size, sha256=sha, hash_if_unverified=download)
    info = inspect_checkpoint(existing, require_sdxl=True)
    if download and keep is not None and finished(keep) is None:
        _copy_verified(existing, keep.with_name(existing.name), progress)
    return _single_file_result(name, existing, info, choice, source=source, preset=preset, url=dl.redact(urls[0]),
                               sha256=sha or dl.verified_sha256(existing))


def _copy_verified(src: Path, dest: Path, progress) -> Path:
    """Copy a verified model file to Drive (temp file + fsync + rename: a cut runtime leaves no half file)."""
    from colabkit import files

    from tqdm.auto import tqdm

    with files.atomic_path(dest) as tmp, open(src, "rb") as fin, open(tmp, "wb") as fout, \
            tqdm(total=src.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024, mininterval=1.0,
                 desc=_("keeping {name} on Drive for the next sessions").format(name=src.name), disable=not progress) as bar:
        while chunk := fin.read(16 * 2**20):
            fout.write(chunk)
            bar.update(len(chunk))
    digest = dl.verified_sha256(src)
    if digest:
        dl.write_verified_marker(dest, digest)
    return dest


def _check_remote(url: str, check_url: bool) -> tuple[str, ...]:
    if not check_url or offline():
        return ("not checked online (offline or check_url=False)",)
    try:
        remote = dl.probe(url)
    except ColabkitError:
        raise
    except (OSError, ValueError) as e:  # no network, DNS, timeout: a preflight must not fail on that alone
        return (f"could not reach {urllib.parse.urlsplit(url).hostname} to check the link ({e.__class__.__name__})",)
    if remote.size is not None and remote.size < 100 * 2**20:
        raise ColabkitError(_("{url} answers with only {size:,} bytes: that is not a model checkpoint (an SDXL file "
                              "is about 6.9 GB). Check the link.").format(url=dl.redact(url), size=remote.size))
    return ()


def _download_any(urls: list[str], dest: Path, *, size, sha256, progress) -> Path:
    last: ColabkitError | None = None
    for url in urls:  # mirrors hold the same bytes (same sha256): try the next when one refuses
        try:
            path = dl.download(url, dest, size=size, sha256=sha256, progress=progress)
        except ColabkitError as e:
            last = e
            continue
        return _fix_suffix(path)
    assert last is not None
    raise last


def _fix_suffix(path: Path) -> Path:
    """A link without a file name is saved as .safetensors; if it was a pickle, call it .ckpt (loaded safely)."""
    if path.suffix == ".safetensors":
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            new = path.with_suffix(".ckpt")
            os.replace(path, new)
            return new
    return path


def _single_file_result(name: str, path: Path, info: CheckpointInfo, choice: str | None, *, source: Source,
                        preset: Preset | None = None, url: str | None = None,
                        sha256: str | None = None) -> ResolvedModel:
    prediction = choice or info.prediction_type or (preset.prediction_type if preset else None) or EPSILON
    notes = list(info.notes)
    if info.prediction_type and choice and choice != info.prediction_type:
        notes.append(_("the file says {prediction_type}, but prediction_type={choice} was chosen").format(
                         prediction_type=info.prediction_type, choice=choice))
    return ResolvedModel(name=name, kind="single_file", path=path, prediction_type=prediction, source=source,
                         preset=preset, url=url, info=info, zero_terminal_snr=info.zero_terminal_snr,
                         sha256=sha256, notes=tuple(notes))


def _resolve_path(text: str, choice: str | None) -> ResolvedModel:
    path = _find_local(text)
    if path.is_dir():
        return _resolve_folder(path, choice)
    info = inspect_checkpoint(path, require_sdxl=True)
    return _single_file_result(path.name, path, info, choice, source="path", sha256=dl.verified_sha256(path))


def _find_local(text: str) -> Path:
    path = Path(text).expanduser()
    if path.exists():
        return path
    from colabkit.project import drive_root, in_colab

    # "MyDrive/models/x.safetensors" or "Loras/_models/x.safetensors": relative to Drive's MyDrive.
    rel = re.sub(r"^/?(content/drive/)?MyDrive/", "", text)
    if not path.is_absolute() or rel != text:
        candidate = drive_root() / rel
        if candidate.exists():
            return candidate
    hint = ""
    if text.startswith("/content/drive") and in_colab() and not Path("/content/drive/MyDrive").is_dir():
        hint = " Google Drive is not mounted: run the notebook's 'mount Drive' cell first."
    elif not text.lower().endswith(_MODEL_SUFFIXES) and "/" not in text:
        raise ColabkitError(_("base_model {text!r} is not a known preset, link or file. ").format(text=text) + _options())
    raise ColabkitError(_("No file or folder at {path}.{hint} Check the path (Drive files are under "
                          "/content/drive/MyDrive/ in Colab). ").format(path=path, hint=hint) + _options())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _resolve_folder(folder: Path, choice: str | None) -> ResolvedModel:
    index = _read_json(folder / "model_index.json")
    unet = _read_json(folder / "unet" / "config.json")
    pipeline = str(index.get("_class_name", ""))
    family = None
    if "Flux" in pipeline or (folder / "transformer").is_dir() and "Flux" in str(
            _read_json(folder / "transformer" / "config.json").get("_class_name", "")):
        family = "flux"
    elif "StableDiffusion3" in pipeline:
        family = "sd3"
    elif unet and unet.get("addition_embed_type") == "text_time":
        family = "sdxl" if (folder / "text_encoder").is_dir() else "sdxl-refiner"
    elif unet:
        family = "sd2" if unet.get("cross_attention_dim") == 1024 else "sd1"
    if family is None:
        raise ColabkitError(_("{folder} is a folder but not a diffusers model (no model_index.json / "
                              "unet/config.json). Point base_model at the model's .safetensors file, or at the "
                              "folder that holds unet/, vae/, text_encoder/ ...").format(folder=folder))
    if family != "sdxl":
        raise ColabkitError(_("{name} is {value} (diffusers folder). colabkit trains LoRAs for SDXL-family models "
                              "only. {suggestion}").format(
                                name=folder.name, value=_FAMILY_WORDS.get(family, family), suggestion=SUGGESTION))
    missing = [s for s in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
               if not (folder / s).is_dir()]
    if missing:
        raise ColabkitError(_("The diffusers folder {folder} lacks {names}/. Download the complete model folder "
                              "(all sub-folders), or use its single .safetensors file.").format(
                                folder=folder, names=', '.join(missing)))
    sched = _read_json(folder / "scheduler" / "scheduler_config.json")
    folder_pred = normalize_prediction_type(sched.get("prediction_type")) if sched.get("prediction_type") else None
    zsnr = bool(sched.get("rescale_betas_zero_snr", False))
    return ResolvedModel(name=folder.name, kind="diffusers", path=folder,
                         prediction_type=choice or folder_pred or EPSILON, source="path", zero_terminal_snr=zsnr)


@dataclass(frozen=True)
class ModelFacts:
    """What the resolved model itself says, read from headers and configs (no weights loaded)."""
    params: dict[str, int]  # parameters of unet, text_encoder, text_encoder_2, vae
    unet_config: dict  # the UNet's diffusers config: its architecture (widths, depths, attention)
    counted: bool  # True: counted in the model's own headers; False: SDXL base 1.0's (a preset not downloaded yet)
    prediction_type: str | None  # what the model says (file metadata/markers, scheduler config, preset); None: nothing
    zero_terminal_snr: bool  # the model carries a zero-terminal-SNR marker ("ztsnr" key, rescale_betas_zero_snr)
    edm: bool = False  # an EDM v-prediction model (CosXL), which "auto" does not put on the ZTSNR schedule

    @property
    def total_params(self) -> int:
        return sum(self.params.values())


_FOLDER_COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")


def model_facts(resolved: ResolvedModel) -> ModelFacts:
    """Parameter counts per network, the UNet's architecture and the model's own prediction/ZTSNR markers."""
    from colabkit.train.models.load import SDXL_CONFIGS, pick_config_dir
    from colabkit.train.models.meta import SDXL_PARAMS

    if resolved.kind == "diffusers":
        sched = _read_json(resolved.path / "scheduler" / "scheduler_config.json")
        said = normalize_prediction_type(sched.get("prediction_type")) if sched.get("prediction_type") else None
        counts = {sub: _folder_params(resolved.path / sub) for sub in _FOLDER_COMPONENTS}
        counted = all(v is not None for v in counts.values())
        params = {k: v if v is not None else SDXL_PARAMS[k] for k, v in counts.items()}
        return ModelFacts(params, _read_json(resolved.path / "unet" / "config.json"), counted, said,
                          bool(sched.get("rescale_betas_zero_snr", False)))
    if resolved.info is not None:
        info = resolved.info
        unet = _read_json(pick_config_dir(info) / "unet" / "config.json")
        return ModelFacts(param_counts(info.shapes), unet, True, info.prediction_type, info.zero_terminal_snr,
                          info.edm)
    # A preset or link still to download: every preset is an SDXL base-sized model.
    said = resolved.preset.prediction_type if resolved.preset else None
    return ModelFacts(dict(SDXL_PARAMS), _read_json(SDXL_CONFIGS / "unet" / "config.json"), False, said, False)


def _folder_params(component: Path) -> int | None:
    """Parameters of one diffusers component folder from its safetensors headers (None: only pickled .bin)."""
    files_ = sorted(component.glob("*.safetensors"))
    plain = [f for f in files_ if f.name.count(".") == 1 or "-of-" in f.name and ".fp16." not in f.name]
    files_ = plain or files_  # the fp16 variant only when it is all there is
    if not files_:
        return None
    return sum(sum(math.prod(s) for s in read_safetensors_shapes(f).values()) for f in files_)


def fingerprint(resolved: ResolvedModel) -> str:
    """A stable identity of the model's content, for caches (latents, text embeddings) that outlive a session.

    The same bytes anywhere give the same value; a different model (another fine-tune with the same layout
    included) a different one. Cheap: a known sha256 when there is one, else a sample of the file (~1 MB).
    """
    if resolved.sha256:
        return f"sha256:{resolved.sha256}"
    path = resolved.path
    if resolved.kind == "single_file":
        known = dl.verified_sha256(path)
        return f"sha256:{known}" if known else f"sample:{_sample_hash(path)}"
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        h.update(rel.encode() + b"\0")
        if f.suffix in (".json", ".txt") and f.stat().st_size < 2**20:
            h.update(f.read_bytes())
        else:
            h.update(_sample_hash(f).encode())
    return f"folder:{h.hexdigest()[:32]}"


def _sample_hash(path: Path, samples: int = 16, chunk: int = 64 * 1024) -> str:
    """sha256 of the size, the first 1 MB (the header) and ``samples`` chunks spread over the rest."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(2**20))
        if size > 2**20:
            for i in range(samples):
                f.seek(2**20 + (size - 2**20 - chunk) * i // max(samples - 1, 1))
                h.update(f.read(chunk))
    return h.hexdigest()[:32]

"""The training set: images with their captions, buckets, and each epoch's batch order.

The order of epoch k is a pure function of (seed, k), and everything random about one sample
(flip, tag shuffle) is a pure function of (seed, epoch, batch, slot). A resumed run rebuilds
exactly the batches the uninterrupted run would have seen; no iterator state is needed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from colabkit.dataset.captions import split_tags
from colabkit.dataset.items import reg_set, training_set
from colabkit.errors import ColabkitError
from colabkit.train.buckets import Fit, fit_to_bucket, make_buckets, nearest_bucket
from colabkit.i18n import _



@dataclass(frozen=True)
class Item:
    path: Path
    caption: str
    sha256: str  # of the image file: the cache key, so an edited image re-caches alone
    size: tuple[int, int]  # (width, height) after EXIF orientation
    fit: Fit
    folder: str = ""  # "": directly in dataset/ (or reg/); else its <repeats>_<name> sub-folder
    repeats: int | None = None  # None: num_repeats; else the sub-folder's repeats
    is_reg: bool = False  # a regularization image (reg/): trained with prior_loss_weight, balanced per epoch

    def times(self, num_repeats: int) -> int:
        """How often this training image comes in one epoch (regularization images: see ``epoch_repeats``)."""
        return num_repeats if self.repeats is None else self.repeats

    @property
    def name(self) -> str:
        """``x.png`` directly in dataset/, ``3_a/x.png`` in a sub-folder, ``reg/...`` for a regularization image."""
        name = f"{self.folder}/{self.path.name}" if self.folder else self.path.name
        return "reg/" + name if self.is_reg else name


@dataclass(frozen=True)
class FolderCount:
    """One training folder in the step maths: its images and how often each trains per epoch."""

    name: str  # "" for dataset/ itself
    images: int
    repeats: int | None  # None: num_repeats

    def times(self, num_repeats: int) -> int:
        return num_repeats if self.repeats is None else self.repeats


@dataclass(frozen=True)
class Scan:
    items: list[Item]
    missing_captions: list[Path]
    orphan_captions: list[Path]
    rejected: list[tuple[Path, str]]  # files the dataset check rejects (never trained on): (file, why + the fix)

    @property
    def unreadable(self) -> list[tuple[Path, str]]:  # the older name
        return self.rejected

    reg_rejected: list[tuple[Path, str]] = field(default_factory=list)  # reg/ files the check rejects

    @property
    def training(self) -> list[Item]:
        """The artist's images (without the regularization images)."""
        return [it for it in self.items if not it.is_reg]

    @property
    def reg(self) -> list[Item]:
        return [it for it in self.items if it.is_reg]

    @property
    def bucket_sizes(self) -> list[int]:
        counts: dict[tuple[int, int], int] = {}
        for it in self.training:
            counts[it.fit.bucket] = counts.get(it.fit.bucket, 0) + 1
        return [counts[b] for b in sorted(counts)]

    @property
    def has_folders(self) -> bool:
        """Whether any image lies in a <repeats>_<name>/ sub-folder (its own repeats), or reg/ has images."""
        return any(it.repeats is not None for it in self.items)

    def bucket_repeats(self, num_repeats: int) -> list[int]:
        """Image-repeats per bucket in one epoch (sorted by bucket), each image counted its own repeats, the
        regularization images as ``epoch_repeats`` balances them."""
        counts: dict[tuple[int, int], int] = {}
        for it, n in zip(self.items, epoch_repeats(self.items, num_repeats)):
            counts[it.fit.bucket] = counts.get(it.fit.bucket, 0) + n
        return [counts[b] for b in sorted(counts) if counts[b]]

    def folders(self) -> list[FolderCount]:
        """The training folders in use, dataset/ itself first, then the sub-folders by name."""
        counts: dict[str, list] = {}
        for it in self.training:
            counts.setdefault(it.folder, [0, it.repeats])[0] += 1
        return [FolderCount(name, n, r) for name, (n, r) in sorted(counts.items())]

    def fingerprint(self) -> str:
        """Identity of the training set (images, captions, and the folders' repeats) for resume checks. An image
        directly in dataset/ is named as before sub-folders existed, so an older run's fingerprint still holds."""
        h = hashlib.sha256()
        for it in self.items:
            h.update(f"{it.name}\0{it.sha256}\0{it.caption}\n".encode())
        return h.hexdigest()


def scan(dataset: Path, resolution: int) -> Scan:
    """The training set of ``dataset/`` as the dataset step defines it (``colabkit.dataset.items``: what the
    check accepts, with a caption; each image read once), with each image's bucket at ``resolution``."""
    if not dataset.is_dir():
        raise ColabkitError(_("No dataset folder at {dataset}. Create the project with the dataset notebook first.").format(
                                dataset=dataset))
    buckets = make_buckets(resolution)
    found = training_set(dataset, resolution=resolution)
    items = []
    for it in found.items:
        w, h = it.size
        items.append(Item(path=it.path, caption=", ".join(it.tags), sha256=it.sha256, size=(w, h),
                          fit=fit_to_bucket(w, h, nearest_bucket(w, h, buckets)), folder=it.folder,
                          repeats=it.repeats))
    for it in reg_set(dataset, resolution=resolution).items if found.items else []:
        w, h = it.size  # after the training images: their indices (and a resumed run's batches) stay as they were
        items.append(Item(path=it.path, caption=", ".join(it.tags), sha256=it.sha256, size=(w, h),
                          fit=fit_to_bucket(w, h, nearest_bucket(w, h, buckets)), folder=it.folder,
                          repeats=it.repeats, is_reg=True))
    rejected = [(p.file, f"{p.reason}; {p.fix}") for p in found.rejected]
    reg_rejected = [(p.file, f"{p.reason}; {p.fix}") for p in reg_set(dataset, resolution=resolution).rejected] \
        if found.items else []
    return Scan(items=items, missing_captions=found.missing_captions, orphan_captions=found.orphan_captions,
                rejected=rejected, reg_rejected=reg_rejected)


def activation_tag_of(items: list[Item]) -> str:
    """The common first tag of the captions (the dataset notebook puts the trigger word there)."""
    items = [it for it in items if not it.is_reg]
    firsts: dict[str, int] = {}
    for it in items:
        tags = split_tags(it.caption)
        if tags:
            firsts[tags[0]] = firsts.get(tags[0], 0) + 1
    if not firsts:
        return ""
    tag, count = max(firsts.items(), key=lambda kv: kv[1])
    return tag if count * 2 > len(items) else ""


def tag_frequency(items: list[Item]) -> dict[str, int]:
    freq: dict[str, int] = {}
    for it in items:
        if it.is_reg:  # the regularization images' captions are not the LoRA's tags
            continue
        for t in split_tags(it.caption):
            freq[t] = freq.get(t, 0) + 1
    return dict(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0])))


def metadata_folder(item_folder: str, num_repeats: int, slug: str) -> str:
    """The folder name the LoRA's metadata gives a training folder, as sd-scripts names its dataset dirs:
    the sub-folder's own name, and ``<num_repeats>_<project>`` for the images directly in dataset/."""
    return item_folder or f"{num_repeats}_{slug}"


def _reg_dirs(reg: list[Item]) -> dict[str, tuple[int, int]]:
    dirs: dict[str, tuple[int, int]] = {}
    for it in reg:
        name = it.folder or "reg"
        n, _ = dirs.get(name, (0, 0))
        dirs[name] = (n + 1, it.repeats or 1)
    return dirs


def dataset_metadata(items: list[Item], num_repeats: int, slug: str) -> dict:
    """What a LoRA file says about its training set, as sd-scripts writes it: ``num_train_images`` (images x
    repeats, summed over the folders), ``tag_frequency`` and ``dataset_dirs`` per folder
    (``{"<folder>": {"n_repeats": N, "img_count": M}}``); for reg/, ``num_reg_images`` and ``reg_dataset_dirs``."""
    groups: dict[str, list[Item]] = {}
    reg = [it for it in items if it.is_reg]
    items = [it for it in items if not it.is_reg]
    for it in items:
        groups.setdefault(metadata_folder(it.folder, num_repeats, slug), []).append(it)
    return dict(
        num_train_images=sum(it.times(num_repeats) for it in items),
        num_reg_images=sum(it.repeats or 1 for it in reg),  # sd-scripts: reg images x their repeats
        reg_dataset_dirs={name: {"n_repeats": r, "img_count": n} for name, (n, r) in sorted(_reg_dirs(reg).items())},
        tag_frequency={name: tag_frequency(group) for name, group in sorted(groups.items())},
        dataset_dirs={name: {"n_repeats": group[0].times(num_repeats), "img_count": len(group)}
                      for name, group in sorted(groups.items())},
    )


# -- each epoch's batches (pure) --------------------------------------------------------------------

def epoch_repeats(items: list[Item], num_repeats: int) -> list[int]:
    """How often each item comes in one epoch. A training image: its folder's repeats (num_repeats directly in
    dataset/). Regularization images are balanced against the training images as sd-scripts does
    (library/train_util.py, DreamBoothDataset): in name order each takes its own repeats until their sum reaches
    the training images' image-repeats (later ones are then left out of the epoch); if one round falls short, each
    in turn gets one more until the sums are equal. So an epoch holds as many regularization samples as training
    samples: the epoch's steps double."""
    times = [0 if it.is_reg else it.times(num_repeats) for it in items]
    reg = [i for i, it in enumerate(items) if it.is_reg]
    target, n, first = sum(times), 0, True
    while reg and n < target:
        for i in reg:
            add = (items[i].repeats or 1) if first else 1
            times[i] += add
            n += add
            if n >= target:
                break
        first = False
    return times


def _rng(*key: int) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little"))


@dataclass(frozen=True)
class Sample:
    index: int  # into Scan.items
    flip: bool
    shuffle_seed: int


def epoch_batches(items: list[Item], num_repeats: int, batch_size: int, seed: int, epoch: int,
                  flip_aug: bool = False) -> list[list[Sample]]:
    """All batches of one epoch, in order; a batch holds one bucket only (one tensor shape). Each image comes
    its folder's repeats times (``num_repeats`` directly in dataset/)."""
    rng = _rng(seed, epoch, 0)
    by_bucket: dict[tuple[int, int], list[int]] = {}
    for i, (it, times) in enumerate(zip(items, epoch_repeats(items, num_repeats))):
        if times:
            by_bucket.setdefault(it.fit.bucket, []).extend([i] * times)
    batches: list[list[int]] = []
    for bucket in sorted(by_bucket):
        order = by_bucket[bucket]
        rng.shuffle(order)
        batches.extend(order[k:k + batch_size] for k in range(0, len(order), batch_size))
    rng.shuffle(batches)
    out = []
    for b, batch in enumerate(batches):
        srng = _rng(seed, epoch, 1, b)
        out.append([Sample(i, flip_aug and srng.random() < 0.5, srng.getrandbits(32)) for i in batch])
    return out


def sample_weights(items: list[Item], batch: list[Sample], prior_loss_weight: float) -> list[float]:
    """Each sample's loss weight: prior_loss_weight for a regularization image, 1 for the artist's (sd-scripts)."""
    return [prior_loss_weight if items[s.index].is_reg else 1.0 for s in batch]


def train_caption(caption: str, shuffle: bool, keep_tokens: int, shuffle_seed: int) -> str:
    """The caption one sample trains with: the first ``keep_tokens`` tags stay put, the rest may shuffle."""
    tags = split_tags(caption)
    if shuffle and len(tags) > keep_tokens + 1:
        head, tail = tags[:keep_tokens], tags[keep_tokens:]
        random.Random(shuffle_seed).shuffle(tail)
        tags = head + tail
    return ", ".join(tags)

"""The training set: images with their captions, buckets, and each epoch's batch order.

The order of epoch k is a pure function of (seed, k), and everything random about one sample
(flip, tag shuffle) is a pure function of (seed, epoch, batch, slot). A resumed run rebuilds
exactly the batches the uninterrupted run would have seen; no iterator state is needed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from colabkit.dataset.captions import split_tags
from colabkit.dataset.items import training_set
from colabkit.errors import ColabkitError
from colabkit.train.buckets import Fit, fit_to_bucket, make_buckets, nearest_bucket



@dataclass(frozen=True)
class Item:
    path: Path
    caption: str
    sha256: str  # of the image file: the cache key, so an edited image re-caches alone
    size: tuple[int, int]  # (width, height) after EXIF orientation
    fit: Fit


@dataclass(frozen=True)
class Scan:
    items: list[Item]
    missing_captions: list[Path]
    orphan_captions: list[Path]
    rejected: list[tuple[Path, str]]  # files the dataset check rejects (never trained on): (file, why + the fix)

    @property
    def unreadable(self) -> list[tuple[Path, str]]:  # the older name
        return self.rejected

    @property
    def bucket_sizes(self) -> list[int]:
        counts: dict[tuple[int, int], int] = {}
        for it in self.items:
            counts[it.fit.bucket] = counts.get(it.fit.bucket, 0) + 1
        return [counts[b] for b in sorted(counts)]

    def fingerprint(self) -> str:
        """Identity of the training set (images and captions) for resume checks."""
        h = hashlib.sha256()
        for it in self.items:
            h.update(f"{it.path.name}\0{it.sha256}\0{it.caption}\n".encode())
        return h.hexdigest()


def scan(dataset: Path, resolution: int) -> Scan:
    """The training set of ``dataset/`` as the dataset step defines it (``colabkit.dataset.items``: what the
    check accepts, with a caption; each image read once), with each image's bucket at ``resolution``."""
    if not dataset.is_dir():
        raise ColabkitError(f"No dataset folder at {dataset}. Create the project with the dataset notebook first.")
    buckets = make_buckets(resolution)
    found = training_set(dataset, resolution=resolution)
    items = []
    for it in found.items:
        w, h = it.size
        items.append(Item(path=it.path, caption=", ".join(it.tags), sha256=it.sha256, size=(w, h),
                          fit=fit_to_bucket(w, h, nearest_bucket(w, h, buckets))))
    rejected = [(p.file, f"{p.reason}; {p.fix}") for p in found.rejected]
    return Scan(items=items, missing_captions=found.missing_captions, orphan_captions=found.orphan_captions,
                rejected=rejected)


def activation_tag_of(items: list[Item]) -> str:
    """The common first tag of the captions (the dataset notebook puts the trigger word there)."""
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
        for t in split_tags(it.caption):
            freq[t] = freq.get(t, 0) + 1
    return dict(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0])))


# -- each epoch's batches (pure) --------------------------------------------------------------------

def _rng(*key: int) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little"))


@dataclass(frozen=True)
class Sample:
    index: int  # into Scan.items
    flip: bool
    shuffle_seed: int


def epoch_batches(items: list[Item], num_repeats: int, batch_size: int, seed: int, epoch: int,
                  flip_aug: bool = False) -> list[list[Sample]]:
    """All batches of one epoch, in order; a batch holds one bucket only (one tensor shape)."""
    rng = _rng(seed, epoch, 0)
    by_bucket: dict[tuple[int, int], list[int]] = {}
    for i, it in enumerate(items):
        by_bucket.setdefault(it.fit.bucket, []).extend([i] * num_repeats)
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


def train_caption(caption: str, shuffle: bool, keep_tokens: int, shuffle_seed: int) -> str:
    """The caption one sample trains with: the first ``keep_tokens`` tags stay put, the rest may shuffle."""
    tags = split_tags(caption)
    if shuffle and len(tags) > keep_tokens + 1:
        head, tail = tags[:keep_tokens], tags[keep_tokens:]
        random.Random(shuffle_seed).shuffle(tail)
        tags = head + tail
    return ", ".join(tags)

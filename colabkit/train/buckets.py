"""Aspect-ratio buckets (pure): each image trains at a size near resolution^2 with its own shape."""

from __future__ import annotations

import math
from dataclasses import dataclass

STEP = 64  # SDXL's latent is 1/8 and its UNet halves twice more: sides must divide by 64


def make_buckets(resolution: int, step: int = STEP, max_ratio: float = 4.0) -> list[tuple[int, int]]:
    """(width, height) pairs, multiples of ``step``, area <= resolution^2, sides within max_ratio."""
    area = resolution * resolution
    buckets = {(resolution, resolution)}
    w = step
    while w <= resolution * max_ratio:
        h = (area // w) // step * step
        if h >= step and max(w, h) / min(w, h) <= max_ratio:
            buckets.add((w, h))
            buckets.add((h, w))
        w += step
    return sorted(buckets)


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest (in log space, so 2:1 and 1:2 are equally far from 1:1)."""
    target = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - target), -b[0] * b[1]))


@dataclass(frozen=True)
class Fit:
    """How an image of size (w, h) becomes a bucket: scale to cover, then centre-crop."""

    bucket: tuple[int, int]
    resized: tuple[int, int]
    crop_left: int
    crop_top: int


def fit_to_bucket(width: int, height: int, bucket: tuple[int, int]) -> Fit:
    bw, bh = bucket
    scale = max(bw / width, bh / height)
    rw, rh = max(bw, round(width * scale)), max(bh, round(height * scale))
    return Fit(bucket=bucket, resized=(rw, rh), crop_left=(rw - bw) // 2, crop_top=(rh - bh) // 2)

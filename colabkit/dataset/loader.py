"""Background prefetching: decode and preprocess the next images while the model runs on this batch.

Threads (not processes) are enough: Pillow's decoders and resizers, numpy and onnxruntime/torch
all release the GIL during the heavy work, and threads share the loaded model and need no pickling.
Results come back in input order; a file that fails to load yields its exception instead of
stopping the run, so one bad image cannot cost the artist the other ninety-nine.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Loaded(Generic[T, R]):
    item: T
    value: R | None = None
    error: BaseException | None = None


def default_workers() -> int:
    # Colab's free tier has 2 vCPUs; more threads than cores only adds contention.
    return max(1, min(4, os.cpu_count() or 1))


def prefetch(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = None, ahead: int = 16
) -> Iterator[Loaded[T, R]]:
    """``fn(item)`` for every item on background threads, yielded in order, at most ``ahead`` in flight."""
    workers = workers or default_workers()
    pending: deque[tuple[T, Future]] = deque()
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="colabkit-load") as pool:
        try:
            for item in it:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= ahead:
                    yield _result(*pending.popleft())
            while pending:
                yield _result(*pending.popleft())
        finally:
            # Consumer stopped early (error, KeyboardInterrupt in Colab): drop queued work quickly.
            for _, fut in pending:
                fut.cancel()


def _result(item, fut: Future) -> Loaded:
    try:
        return Loaded(item, fut.result())
    except Exception as e:  # reported per file by the caller
        return Loaded(item, error=e)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for x in items:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

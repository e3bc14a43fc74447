"""The daily GPU budget: stop, with state saved, before Colab's time runs out.

The budget counts from the runtime's start (installs, downloads and caching count too). The
trainer measures its own step and save times and stops when the next step plus a save plus a
safety margin would no longer fit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable


def default_clock() -> Callable[[], float]:
    # Tests and notebook runs can make time pass by a fixed amount per reading, so that a budget
    # stop happens at a chosen step on any machine.
    tick = os.environ.get("COLABKIT_FAKE_SECONDS_PER_TICK")
    if not tick:
        return time.time
    start, step, n = time.time(), float(tick), [0]

    def fake() -> float:
        n[0] += 1
        return start + n[0] * step

    return fake


@dataclass
class Budget:
    start: float  # when the runtime started (UNIX time)
    hours: float
    margin_s: float = 600.0
    clock: Callable[[], float] = field(default_factory=default_clock)
    step_s: float | None = None  # smoothed seconds per step
    save_s: float = 0.0  # the slowest state save seen
    preview_s: float | None = None  # the slowest epoch-end preview seen (None: none made yet)

    @property
    def deadline(self) -> float:
        return self.start + self.hours * 3600

    def now(self) -> float:
        return self.clock()

    def left_s(self) -> float:
        return self.deadline - self.now()

    def record_step(self, seconds: float) -> None:
        # The first steps include warm-up; an exponential average follows the steady rate.
        self.step_s = seconds if self.step_s is None else 0.8 * self.step_s + 0.2 * seconds

    def record_save(self, seconds: float) -> None:
        self.save_s = max(self.save_s, seconds)

    def record_preview(self, seconds: float) -> None:
        self.preview_s = max(self.preview_s or 0.0, seconds)

    def can_start(self) -> bool:
        """False when less than the safety margin is left before anything is loaded: a run started then would
        spend what is left loading the model, for a step or two, with Colab's cut close."""
        return self.left_s() >= self.margin_s

    def must_stop(self, preview_s: float = 0.0) -> bool:
        """True when one more step and a save would eat into the safety margin. ``preview_s``: the expected
        cost of the epoch-end preview the next step would be followed by (0 when it is not an epoch's end):
        a preview that would not fit is not started, the run stops before it."""
        need = 1.5 * (self.step_s or 0.0) + 1.5 * self.save_s + 1.2 * preview_s + self.margin_s
        return self.left_s() < need


def hms(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h} h {rest // 60:02d} min" if h else f"{rest // 60} min {rest % 60:02d} s"

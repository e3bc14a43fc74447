"""A budget that runs out after a given number of steps: the daily stop, made reproducible for tests."""

from __future__ import annotations

from colabkit.train.budget import Budget


class StopAfter(Budget):
    """Ends the session after ``n`` more steps, as if the clock said the GPU time was up."""

    def __init__(self, n: int):
        super().__init__(start=0.0, hours=1.0, margin_s=0.0, clock=lambda: 0.0)
        self.n = n

    def must_stop(self, preview_s: float = 0.0) -> bool:
        self.n -= 1
        return self.n <= 0

"""colabkit: train an SDXL LoRA on your own drawings on a free Colab T4.

Heavy imports (torch, diffusers) live in the modules that need them, so ``import colabkit``
and ``colabkit doctor`` stay fast and work even when the ML stack is broken.
"""

import os as _os
import sys as _sys

# torch's OpenMP threads (libgomp) busy-wait at the end of each parallel region; by default for ~3 ms (300,000
# spins), and as soon as another process takes a core, a spinning thread burns the time slice its partner needs:
# a CPU step collapsed 10-30x. Never spinning (OMP_WAIT_POLICY=PASSIVE) fixes that but makes every small
# operator wait for a thread to wake up: a quiet 2-core step ~25% slower. A short spin (~0.2 ms) keeps the quiet
# speed, and a busy machine is handled by the thread count (the run plan leaves busy cores alone and the loop
# gives one up when the machine gets busy). Measured: benchmarks/RESULTS.md. libgomp reads this once, when
# torch loads it, so it is set before torch is imported; a wait policy or spin count the user set is kept.
if "torch" not in _sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(_os.environ):
    _os.environ["GOMP_SPINCOUNT"] = "20000"

__version__ = "0.1.0"

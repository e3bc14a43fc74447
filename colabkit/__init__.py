"""colabkit: train an SDXL LoRA on your own drawings on a free Colab T4.

Heavy imports (torch, diffusers) live in the modules that need them, so ``import colabkit``
and ``colabkit doctor`` stay fast and work even when the ML stack is broken.
"""

import os as _os
import sys as _sys

# OpenMP threads that busy-wait between parallel regions (libgomp's default) collapse a CPU step 10-30x as
# soon as another process takes a core (Colab's Drive sync, a notebook server, other jobs): a waiting thread
# spins on the core its partner needs. Passive waiting costs little on a quiet machine and nothing on a GPU
# (benchmarks/RESULTS.md). libgomp reads this once, when torch loads it, so it is set before torch is imported;
# a value the user set is kept.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

"""colabkit: train an SDXL LoRA on your own drawings on a free Colab T4.

Heavy imports (torch, diffusers) live in the modules that need them, so ``import colabkit``
and ``colabkit doctor`` stay fast and work even when the ML stack is broken.
"""

__version__ = "0.1.0"

"""Tiny random-weight models of the real architectures, for tests, smoke runs and machines without weights.

Each builder writes an ordinary on-disk model (a diffusers folder, an ONNX file, a transformers folder),
so the *real* loading code is what loads it. Nothing here downloads anything.
"""

from colabkit.tiny.sdxl import TINY_SDXL_NAME, tiny_sdxl_path, build_tiny_sdxl  # noqa: F401

"""Step 3: from a trained LoRA to game assets.

- ``config``   CompareConfig, GenerateConfig, CutoutConfig: one typed config per step (notebook 3's forms, CLI).
- ``pipeline`` the SDXL pipeline for inference: same base_model choices as training, LoRA files as adapters,
               fp16 on a GPU with the VAE decoded in float32 (the stock SDXL VAE turns fp16 into NaN).
- ``compare``  the epoch grid: one row per LoRA file, one column per LoRA weight, same prompts and seeds.
- ``generate`` images with A1111's ``parameters`` PNG text chunk (read back by ``read_parameters``).
- ``labels``   connected components of a mask (scanline runs + union-find, numpy only).
- ``cutout``   key a plain light background to transparency (flood fill from the borders), or a learned
               matting model through onnxruntime when its file is given.
- ``sprites``  split a cut-out sheet into trimmed sprites.
- ``atlas``    pack sprites into one atlas PNG + TexturePacker JSON-hash (Phaser, PixiJS).
"""

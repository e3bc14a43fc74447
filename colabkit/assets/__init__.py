"""Step 3: from a trained LoRA to game assets.

- ``config``   CompareConfig, GenerateConfig, CutoutConfig: one typed config per step (notebook 3's forms, CLI).
- ``pipeline`` the SDXL pipeline for inference: same base_model choices as training, LoRA files as adapters,
               fp16 on a GPU with the VAE decoded in float32 (the stock SDXL VAE turns fp16 into NaN).
- ``compare``  the epoch grid: one row per LoRA file, a no-LoRA column then one per LoRA weight, same prompts
               and seeds; the settings printed under it and kept in its PNG ``parameters`` chunk.
- ``generate`` images with A1111's ``parameters`` PNG text chunk (read back by ``read_parameters``).
- ``labels``   connected components of a mask (scanline runs + union-find, numpy only).
- ``cutout``   key a light background (estimated per pixel) to transparency: flood fill from the borders,
               drop shadows kept/soft/removed, edges un-mixed, gaps closed, enclosed regions numbered; or a
               learned matting model through onnxruntime when its file is given. The folder step.
- ``sprites``  split a cut-out sheet into trimmed sprites; bleed, shared canvas, names.
- ``atlas``    pack a set's sprites into atlas pages + TexturePacker JSON-hash and Phaser's multiatlas.
- ``pixelart`` the generated pixel size, one sprite pixel per block, one palette for a set.
"""

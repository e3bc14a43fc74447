"""A tiny BLIP captioner: BlipForConditionalGeneration with toy sizes and a hand-written WordPiece vocab.

Same classes and files as ``Salesforce/blip-image-captioning-*`` (config.json, weights, a BERT-style
tokenizer with BLIP's ``[DEC]`` start token, BlipProcessor's preprocessor config), so colabkit's real
``from_pretrained`` + ``generate`` path runs on it. Random weights: the captions are seeded word salad
drawn from plain English words, which is all the pipeline needs to exercise writing and editing them.
"""

from __future__ import annotations

import os
from pathlib import Path

from colabkit.tiny.cache import built_once

TINY_BLIP_NAME = "tiny-blip"
_VERSION = "2"
IMAGE_SIZE = 32

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
# Whole words only (no "##" pieces): any token sequence the random decoder produces reads as words.
WORDS = """
a an the of on in with and drawing sketch picture painting girl boy cat dog tree house sky flower
black white red blue green sitting standing holding looking small large cute old young line art
woman man bird fish hat dress hair face hand chair table window book cup moon sun star
""".split()

def write_tiny_tokenizer(folder: Path) -> int:
    """vocab.txt + tokenizer configs for a lower-casing BERT WordPiece tokenizer; returns the vocab size."""
    import inspect

    from transformers import BertTokenizer, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + sorted(set(WORDS))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    common = dict(do_lower_case=True, bos_token="[DEC]", model_max_length=64)
    if "vocab" in inspect.signature(BertTokenizer.__init__).parameters:  # transformers 5: takes the dict
        tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, **common)
    else:  # transformers 4: reads vocab.txt
        tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), **common)
    tok.save_pretrained(folder)
    return len(vocab)

def build_tiny_blip(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny BLIP captioning folder (model + processor) and return its path."""
    import torch
    from transformers import (
        AutoTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    tmp = Path(folder)
    tmp.mkdir(parents=True, exist_ok=True)
    vocab_size = write_tiny_tokenizer(tmp)
    ids = {t: i for i, t in enumerate(SPECIAL)}
    config = BlipConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=8,
            projection_dim=32,
            initializer_range=0.02,  # BLIP's default (1e-10) would make every caption identical
        ),
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=64,
            # BLIP's conventions: generation starts at [DEC], stops at [SEP], pads with [PAD].
            bos_token_id=ids["[DEC]"],
            sep_token_id=ids["[SEP]"],
            eos_token_id=ids["[SEP]"],
            pad_token_id=ids["[PAD]"],
        ),
        projection_dim=32,
        image_text_hidden_size=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        # At init scale the decoder barely attends to the image and writes the same words for every
        # picture; stronger cross-attention makes captions depend on the image, like a trained model.
        for name, param in model.text_decoder.named_parameters():
            if ".crossattention." in name and name.endswith("weight") and "LayerNorm" not in name:
                param.mul_(8.0)
    model.save_pretrained(tmp)
    tokenizer = AutoTokenizer.from_pretrained(tmp)
    # BLIP's mean/std (CLIP's), bicubic resize to the vision tower's size, as in the real checkpoints.
    image_processor = BlipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp)
    return tmp

def tiny_blip_path() -> Path:
    """The built-in ``tiny-blip`` folder, built on first use (about a second) and reused after."""
    return built_once("tiny-blip", _VERSION, build_tiny_blip)

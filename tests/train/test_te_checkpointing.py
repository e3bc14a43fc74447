"""A trained text encoder's LoRA gets gradients with gradient checkpointing on, also where checkpointing is
re-entrant (transformers 4.x's default), which passes no gradient into a layer whose inputs need none."""

import pytest
import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from colabkit.train import lora
from colabkit.train.cache import encode_prompts
from colabkit.train.loop import checkpoint_text_encoder


def _encoders(tiny_sdxl):
    torch.manual_seed(0)
    tes = [CLIPTextModel.from_pretrained(tiny_sdxl / "text_encoder"),
           CLIPTextModelWithProjection.from_pretrained(tiny_sdxl / "text_encoder_2")]
    toks = [CLIPTokenizer.from_pretrained(tiny_sdxl / "tokenizer"),
            CLIPTokenizer.from_pretrained(tiny_sdxl / "tokenizer_2")]
    for te in tes:
        te.requires_grad_(False)
        lora.add_lora(te, lora.text_encoder_targets(te), 4, 2)
        te.train()
    return tes, toks


def _lora_grads(tes, toks, max_token_length=75):
    embeds, pooled = encode_prompts(["a drawing, outline, circle"] * 2, toks, tes, "cpu", max_token_length)
    (embeds.square().mean() + pooled.square().mean()).backward()
    # LoRA's up weights start at zero, so the down weights get no gradient on the first step: the up ones do
    return {name: p.grad for te in tes for name, p in te.named_parameters() if p.requires_grad}


def _nonzero_share(grads):
    return sum(g is not None and bool(g.abs().sum() > 0) for g in grads.values()) / len(grads)


def _like_transformers_4(te, monkeypatch, force_reentrant: bool):
    """``gradient_checkpointing_enable`` as transformers 4.x has it: torch's checkpoint with the kwargs given
    (re-entrant when none are), and no hook that makes the embeddings' output require grad (5.x adds one)."""
    import functools

    from torch.utils.checkpoint import checkpoint

    def enable(gradient_checkpointing_kwargs=None):
        kwargs = dict(gradient_checkpointing_kwargs or {"use_reentrant": True})
        if force_reentrant:
            kwargs["use_reentrant"] = True
        te._set_gradient_checkpointing(enable=True, gradient_checkpointing_func=functools.partial(checkpoint, **kwargs))

    monkeypatch.setattr(te, "gradient_checkpointing_enable", enable)


@pytest.mark.parametrize("like", ["transformers-5", "transformers-4", "transformers-4-reentrant"])
def test_text_encoder_lora_gets_gradients_with_checkpointing(tiny_sdxl, monkeypatch, like):
    tes, toks = _encoders(tiny_sdxl)
    reference = _nonzero_share(_lora_grads(tes, toks))
    for te in tes:
        te.zero_grad(set_to_none=True)
        if like != "transformers-5":
            _like_transformers_4(te, monkeypatch, force_reentrant=like.endswith("reentrant"))
        checkpoint_text_encoder(te)
        assert te.is_gradient_checkpointing
    grads = _lora_grads(tes, toks)
    # every LoRA up weight that gets a gradient without checkpointing gets one with it (the first encoder's
    # last layer feeds nothing: SDXL takes its penultimate hidden states)
    assert reference > 0.3 and _nonzero_share(grads) == reference


def test_reentrant_checkpointing_without_the_input_hook_gives_the_lora_no_gradient(tiny_sdxl, monkeypatch):
    """The failure checkpoint_text_encoder prevents, shown: with transformers 4.x's default alone the text encoders'
    output does not even require grad (every layer is checkpointed re-entrantly on inputs that need none)."""
    tes, toks = _encoders(tiny_sdxl)
    for te in tes:
        _like_transformers_4(te, monkeypatch, force_reentrant=True)
        te.gradient_checkpointing_enable()
    with pytest.warns(UserWarning, match="None of the inputs have requires_grad"), \
            pytest.raises(RuntimeError, match="does not require grad"):
        _lora_grads(tes, toks)

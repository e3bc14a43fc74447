"""Long captions: 75-token chunks as sd-scripts' max_token_length encodes them for SDXL, on tiny-sdxl's encoders.

tiny-sdxl's tokenizers are character-level (no merges): a caption's token count is its number of non-space
characters, so ~60 WD14-style tags are several hundred tokens.
"""

import pytest
import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from colabkit.train.cache import (
    TextCache,
    caption_length_check,
    chunked_input_ids,
    count_long_captions,
    encode_prompts,
    token_count,
)


@pytest.fixture(scope="module")
def te(tiny_sdxl):
    tokenizers = [CLIPTokenizer.from_pretrained(tiny_sdxl / "tokenizer"),
                  CLIPTokenizer.from_pretrained(tiny_sdxl / "tokenizer_2")]
    encoders = [CLIPTextModel.from_pretrained(tiny_sdxl / "text_encoder").eval(),
                CLIPTextModelWithProjection.from_pretrained(tiny_sdxl / "text_encoder_2").eval()]
    return tokenizers, encoders


def tags(n: int, changed: int | None = None) -> str:
    """n WD14-like tags; tag number ``changed`` spelt differently (same length)."""
    return ", ".join(("zzzz" if i == changed else f"t{i:03d}") for i in range(n))


def tokens_before(caption: str, tag_index: int) -> int:
    """Where a tag of ``tags()`` starts, in tokens (character-level: non-space characters)."""
    return len(", ".join(f"t{i:03d}" for i in range(tag_index)).replace(" ", "")) + (1 if tag_index else 0)


def kohya_chunks(tokenizer, caption: str, max_token_length: int) -> torch.Tensor:
    """sd-scripts' TokenizeStrategy._get_input_ids for one caption and max_length = max_token_length + 2,
    re-expressed from its documented behaviour (its v1 and v2/SDXL branches)."""
    L = tokenizer.model_max_length
    max_length = max_token_length + 2
    ids = tokenizer(caption, padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="pt").input_ids[0]
    out = []
    for i in range(1, max_length - L + 2, L - 2):
        chunk = torch.cat((ids[0:1], ids[i:i + L - 2], ids[-1:]))
        if tokenizer.pad_token_id != tokenizer.eos_token_id:
            if chunk[-2] != tokenizer.eos_token_id and chunk[-2] != tokenizer.pad_token_id:
                chunk[-1] = tokenizer.eos_token_id
            if chunk[1] == tokenizer.pad_token_id:
                chunk[1] = tokenizer.eos_token_id
        out.append(chunk)
    return torch.stack(out)


def test_token_count_and_long_caption_count(te):
    tok = te[0][0]
    caption = tags(60)
    assert token_count(tok, "1girl, solo") == 10  # character-level: one token per non-space character
    assert token_count(tok, caption) == len(caption.replace(" ", "")) == 60 * 4 + 59
    assert token_count(te[0][1], caption) == token_count(tok, caption)  # SDXL's two tokenizers count alike
    captions = [tags(5), tags(15), tags(16), tags(40), tags(60)]  # 24, 74, 79, 199, 299 tokens
    assert [token_count(tok, c) for c in captions] == [24, 74, 79, 199, 299]
    assert count_long_captions(tok, captions, 75) == 3
    assert count_long_captions(tok, captions, 225) == 1
    assert count_long_captions(tok, [], 75) == 0


def test_preflight_line_on_caption_lengths(te):
    tok = te[0][0]
    captions = [tags(5), tags(15), tags(16), tags(40), tags(60)]  # 24, 74, 79, 199, 299 tokens
    level, msg = caption_length_check(tok, captions, 225)
    assert level == "warn" and msg.startswith("1 of 5 captions exceed 225 tokens") and "Shorten those" in msg
    level, msg = caption_length_check(tok, captions, 75)
    assert level == "warn" and msg.startswith("3 of 5 captions exceed 75 tokens")
    assert "Set max_token_length to 225 or shorten those captions" in msg
    assert caption_length_check(tok, captions[:4], 225) == ("ok", "2 of 4 captions exceed 75 tokens; all fit in "
                                                                  "max_token_length 225.")
    assert caption_length_check(tok, captions[:2], 150) == ("ok", "all 2 captions fit in 75 tokens.")


@pytest.mark.parametrize("length", [150, 225])
def test_chunks_are_kohyas(te, length):
    captions = ["a", tags(15), tags(15)[:75], tags(20), tags(30), tags(40), tags(60)]  # 1..299 tokens
    for tok in te[0]:  # tokenizer pads with EOS (sd-scripts' "v1" branch), tokenizer_2 with '!' (its SDXL branch)
        ids = chunked_input_ids(tok, captions, length)
        assert ids.shape == (len(captions), length // 75, 77)
        for b, c in enumerate(captions):
            assert torch.equal(ids[b], kohya_chunks(tok, c, length)), (tok.pad_token, c)
    # every chunk of tokenizer_2 has an EOS to pool at, also the empty ones
    ids2 = chunked_input_ids(te[0][1], captions, length)
    assert ((ids2 == te[0][1].eos_token_id).sum(-1) >= 1).all()


def test_75_tokens_is_the_plain_encoding(te):
    tokenizers, encoders = te
    captions = [tags(3), tags(60)]
    with torch.no_grad():
        embeds, pooled = encode_prompts(captions, tokenizers, encoders, "cpu")
        same, same_pooled = encode_prompts(captions, tokenizers, encoders, "cpu", max_token_length=75)
        ids = [t(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
               for t in tokenizers]
        h1 = encoders[0](ids[0], output_hidden_states=True).hidden_states[-2]
        out2 = encoders[1](ids[1], output_hidden_states=True)
    assert embeds.shape == (2, 77, 64) and pooled.shape == (2, 32)
    assert torch.equal(embeds, torch.cat([h1, out2.hidden_states[-2]], -1)) and torch.equal(pooled, out2.text_embeds)
    assert torch.equal(embeds, same) and torch.equal(pooled, same_pooled)


@pytest.mark.parametrize("length", [150, 225])
def test_long_encoding_is_kohyas_assembly(te, length):
    """BOS of chunk 1, the 75 inner positions of every chunk, the last chunk's final position; pooled of chunk 1."""
    tokenizers, encoders = te
    caption = tags(60)
    n = length // 75
    with torch.no_grad():
        embeds, pooled = encode_prompts([caption], tokenizers, encoders, "cpu", max_token_length=length)
        expected = []
        for tok, enc in zip(tokenizers, encoders):
            chunks = kohya_chunks(tok, caption, length)
            per_chunk = [enc(chunks[k:k + 1], output_hidden_states=True) for k in range(n)]
            h = [o.hidden_states[-2][0] for o in per_chunk]
            expected.append(torch.cat([h[0][:1]] + [hk[1:76] for hk in h] + [h[-1][-1:]]))
        first_pooled = per_chunk[0].text_embeds[0]
    assert embeds.shape == (1, length + 2, 64) and pooled.shape == (1, 32)
    assert torch.allclose(embeds[0], torch.cat(expected, -1), atol=1e-6)
    assert torch.allclose(pooled[0], first_pooled, atol=1e-6)


def test_a_batch_encodes_like_its_captions_one_by_one(te):
    tokenizers, encoders = te
    captions = [tags(60), tags(4), tags(25)]
    with torch.no_grad():
        batch, pooled = encode_prompts(captions, tokenizers, encoders, "cpu", max_token_length=225)
        for i, c in enumerate(captions):
            one, one_pooled = encode_prompts([c], tokenizers, encoders, "cpu", max_token_length=225)
            assert torch.allclose(batch[i], one[0], atol=1e-5) and torch.allclose(pooled[i], one_pooled[0], atol=1e-5)


def test_tags_after_token_77_change_the_conditioning_only_with_long_captions(te):
    tokenizers, encoders = te
    late = 20  # starts after token 77 and ends before 225
    very_late = 50  # after token 225: cut at every setting
    assert 77 < tokens_before(tags(60), late) and tokens_before(tags(60), late + 1) < 225
    assert tokens_before(tags(60), very_late) > 227
    base, changed, cut = tags(60), tags(60, changed=late), tags(60, changed=very_late)

    def enc(caption, length):
        with torch.no_grad():
            return encode_prompts([caption], tokenizers, encoders, "cpu", max_token_length=length)

    for length, sees_late_tag in ((75, False), (150, True), (225, True)):
        (e0, p0), (e1, p1), (e2, p2) = enc(base, length), enc(changed, length), enc(cut, length)
        assert torch.equal(e0, e2) and torch.equal(p0, p2)  # beyond the limit: not seen
        assert (not torch.equal(e0, e1)) is sees_late_tag, length
        assert torch.equal(p0, p1)  # pooled is the first chunk's: tag 20 is in chunk 2
    # a change in the first chunk moves the pooled output too
    assert not torch.equal(enc(base, 225)[1], enc(tags(60, changed=2), 225)[1])


def test_text_cache_key_includes_max_token_length(te, tmp_path):
    tokenizers, encoders = te
    caches = {n: TextCache(tmp_path, "model|fp16fix=False", max_token_length=n) for n in (75, 150, 225)}
    assert len({c.path(tags(60)) for c in caches.values()}) == 3
    assert caches[225].path(tags(60)) == TextCache(tmp_path, "model|fp16fix=False", 225).path(tags(60))
    assert caches[225].path(tags(60)) != TextCache(tmp_path, "other|fp16fix=False", 225).path(tags(60))
    for n, cache in caches.items():
        assert cache.build([tags(60), tags(2)], tokenizers, encoders, "cpu") == 2
        assert cache.build([tags(60)], tokenizers, encoders, "cpu") == 0  # cached
        embeds, pooled = cache.load([tags(60)])[tags(60)]
        assert embeds.shape == (n + 2, 64) and pooled.shape == (32,)
    with pytest.raises(ValueError, match="max_token_length"):
        TextCache(tmp_path, "model", max_token_length=77)


def test_the_unet_takes_the_longer_sequence(te, tiny_sdxl):
    from diffusers import UNet2DConditionModel

    tokenizers, encoders = te
    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet").eval()
    with torch.no_grad():
        embeds, pooled = encode_prompts([tags(60)], tokenizers, encoders, "cpu", max_token_length=225)
        sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        time_ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]])
        out = unet(sample, torch.tensor([500]), embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids})
        short = unet(sample, torch.tensor([500]), embeds[:, :77],
                     added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids})
    assert out.sample.shape == (1, 4, 8, 8) and torch.isfinite(out.sample).all()
    assert not torch.equal(out.sample, short.sample)  # the positions after 77 are attended to



@pytest.mark.slow
def test_training_pads_to_the_chunks_its_captions_need(tiny_project):
    """Short captions train exactly as with the plain 77 positions whatever max_token_length allows (what they are
    prompted with at generation time, and one text-encoder pass a step); one long caption makes the run use more."""
    from safetensors.torch import load_file

    from colabkit.train.loop import train
    from conftest import tiny_config

    def lora(limit):
        result = train(tiny_config(max_token_length=limit, start_over=True, epochs=1), device="cpu")
        return load_file(result.final_lora)

    short_75, short_225 = lora(75), lora(225)
    assert short_75.keys() == short_225.keys()
    assert all(torch.equal(short_75[k], short_225[k]) for k in short_75)
    (tiny_project.dataset / "d0.txt").write_text("houtline, " + tags(60))  # past 75 tokens: more chunks
    long_75, long_225 = lora(75), lora(225)
    assert any(not torch.equal(long_75[k], long_225[k]) for k in long_75)

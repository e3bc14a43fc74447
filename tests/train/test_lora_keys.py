"""LoRA targets and kohya/SGM names, checked on the REAL SDXL (meta device) against diffusers' own converters."""

import re

import pytest
import torch

from colabkit.train.lora import (
    kohya_module_table,
    kohya_te_name,
    kohya_unet_name,
    sgm_to_unet,
    text_encoder_targets,
    unet_targets,
    unet_to_sgm,
)

LDM = "model.diffusion_model."


@pytest.fixture(scope="module")
def real():
    from colabkit.train.models.meta import meta_text_encoders, meta_unet

    te1, te2 = meta_text_encoders()
    return meta_unet(), te1, te2


def _meta_unet(**config):
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**config)


def _sd15_like_unet():
    # an up block WITHOUT attentions that has an upsampler (SD 1.5 layout): its conv is output_blocks.K.1.conv
    return _meta_unet(
        sample_size=8,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=2,
        cross_attention_dim=8,
        attention_head_dim=2,
        norm_num_groups=4,
    )


def test_real_sdxl_target_counts(real):
    unet, te1, te2 = real
    lora = unet_targets(unet, "LoRA")
    # 11 Transformer2DModels (down 2+2, mid 1, up 3+3), each with proj_in + proj_out, holding 70 transformer
    # blocks (down_blocks.1: 2 attentions x 2 layers, down_blocks.2: 2 x 10, mid 10, up_blocks.0: 3 x 10,
    # up_blocks.1: 3 x 2) of 10 Linears each (attn1/attn2 to_q, to_k, to_v, to_out.0; ff.net.0.proj, ff.net.2).
    assert 4 + 20 + 10 + 30 + 6 == 70
    assert len(lora) == 11 * 2 + 70 * 10 == 722
    assert len(set(lora)) == len(lora)

    locon = unet_targets(unet, "LoCon")
    # LoCon adds, per ResnetBlock2D (down 3x2 + mid 2 + up 3x3 = 17): conv1, conv2, time_emb_proj; a 1x1
    # conv_shortcut where channels change (down_blocks.1/2 resnets.0 = 2, and all 9 up resnets, whose input
    # is concatenated with the skip = 11); the convs of 2 Downsample2D and 2 Upsample2D.
    assert len(locon) == 722 + 17 * 3 + 11 + 2 + 2 == 788
    assert set(lora) < set(locon)
    mods = dict(unet.named_modules())
    extra = [mods[n] for n in set(locon) - set(lora)]
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in extra) == 17 * 2 + 4
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in extra) == 11
    assert sum(isinstance(m, torch.nn.Linear) for m in extra) == 17

    assert len(text_encoder_targets(te1)) == 12 * 6
    assert len(text_encoder_targets(te2)) == 32 * 6
    assert len(text_encoder_targets(te1)) + len(text_encoder_targets(te2)) == 264


@pytest.mark.parametrize("which", ["real", "tiny", "sd15_like"])
def test_sgm_names_are_what_diffusers_single_file_converter_reads(real, which):
    """Key every UNet tensor by our SGM name; diffusers' converter must rebuild the UNet state dict exactly.

    Identity (``is``) of every tensor, not only the key set: two blocks swapped or one index off fail.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from colabkit.tiny.sdxl import UNET_CONFIG

    unet = {"real": lambda: real[0], "tiny": lambda: _meta_unet(**UNET_CONFIG), "sd15_like": _sd15_like_unet}[which]()
    sd = unet.state_dict()
    sgm = {LDM + unet_to_sgm(k, unet): v for k, v in sd.items()}
    assert len(sgm) == len(sd)
    if which == "real":
        assert len(sd) == 1680

    converted = convert_ldm_unet_checkpoint(sgm, dict(unet.config))
    assert set(converted) == set(sd)
    assert all(converted[k] is sd[k] for k in sd)
    assert all(sgm_to_unet(unet_to_sgm(k, unet), unet) == k for k in sd)

    # every LoRA module we would write names an SGM module holding that very weight
    for name in unet_targets(unet, "LoCon"):
        path = unet_to_sgm(name, unet)
        assert sgm[f"{LDM}{path}.weight"] is sd[f"{name}.weight"]
        assert kohya_unet_name(name, unet) == "lora_unet_" + path.replace(".", "_")


def test_upsampler_of_block_without_attentions_is_slot_1():
    unet = _sd15_like_unet()
    assert unet_to_sgm("up_blocks.0.upsamplers.0.conv", unet) == "output_blocks.2.1.conv"
    assert unet_to_sgm("up_blocks.1.upsamplers.0.conv", unet) == "output_blocks.5.2.conv"
    assert unet_to_sgm("down_blocks.2.downsamplers.0.conv", unet) == "input_blocks.9.0.op"


def test_real_sdxl_kohya_names(real):
    unet, te1, te2 = real
    expected = {
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q": "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
        "down_blocks.1.attentions.1.proj_in": "lora_unet_input_blocks_5_1_proj_in",
        "down_blocks.2.attentions.1.transformer_blocks.9.ff.net.0.proj": "lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_0_proj",
        "mid_block.attentions.0.proj_in": "lora_unet_middle_block_1_proj_in",
        "up_blocks.0.attentions.0.transformer_blocks.9.attn2.to_out.0": "lora_unet_output_blocks_0_1_transformer_blocks_9_attn2_to_out_0",
        "up_blocks.1.attentions.2.proj_out": "lora_unet_output_blocks_5_1_proj_out",
        "down_blocks.0.resnets.0.conv1": "lora_unet_input_blocks_1_0_in_layers_2",
        "down_blocks.0.resnets.1.conv2": "lora_unet_input_blocks_2_0_out_layers_3",
        "down_blocks.1.resnets.0.time_emb_proj": "lora_unet_input_blocks_4_0_emb_layers_1",
        "down_blocks.1.resnets.0.conv_shortcut": "lora_unet_input_blocks_4_0_skip_connection",
        "down_blocks.0.downsamplers.0.conv": "lora_unet_input_blocks_3_0_op",
        "down_blocks.1.downsamplers.0.conv": "lora_unet_input_blocks_6_0_op",
        "mid_block.resnets.0.conv1": "lora_unet_middle_block_0_in_layers_2",
        "mid_block.resnets.1.conv2": "lora_unet_middle_block_2_out_layers_3",
        "up_blocks.0.upsamplers.0.conv": "lora_unet_output_blocks_2_2_conv",
        "up_blocks.1.upsamplers.0.conv": "lora_unet_output_blocks_5_2_conv",
        "up_blocks.2.resnets.2.conv_shortcut": "lora_unet_output_blocks_8_0_skip_connection",
    }
    for name, key in expected.items():
        assert kohya_unet_name(name, unet) == key

    # transformers 5: CLIPTextModel has no text_model wrapper, CLIPTextModelWithProjection has; the key must not care
    assert kohya_te_name("encoder.layers.0.self_attn.q_proj", 1) == "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    assert kohya_te_name("text_model.encoder.layers.31.mlp.fc2", 2) == "lora_te2_text_model_encoder_layers_31_mlp_fc2"
    # the exact spelling ComfyUI's LORA_CLIP_MAP / model_lora_keys_clip looks up
    pattern = re.compile(r"lora_te([12])_text_model_encoder_layers_(\d+)_(self_attn_[qkv]_proj|self_attn_out_proj|mlp_fc[12])")
    for index, te, layers in ((1, te1, 12), (2, te2, 32)):
        names = [kohya_te_name(n, index) for n in text_encoder_targets(te)]
        assert all(pattern.fullmatch(n) for n in names)
        assert {int(pattern.fullmatch(n).group(2)) for n in names} == set(range(layers))
        assert len(set(names)) == layers * 6


def test_diffusers_lora_loader_maps_every_real_sdxl_key_back(real):
    """diffusers' own kohya->diffusers conversion (SGM block remap included) lands on exactly our modules."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft, convert_unet_state_dict_to_peft

    from colabkit.train.lora.keys import te_canonical

    unet, te1, te2 = real
    targets = unet_targets(unet, "LoCon")
    kohya = [kohya_unet_name(n, unet) for n in targets]
    kohya += [kohya_te_name(n, i) for i, te in ((1, te1), (2, te2)) for n in text_encoder_targets(te)]
    sd = {k + s: torch.zeros(()) for k in kohya for s in (".lora_down.weight", ".lora_up.weight", ".alpha")}

    converted, alphas = StableDiffusionXLPipeline.lora_state_dict(sd, unet_config=unet.config)
    assert len(converted) == 2 * len(kohya) and len(alphas) == len(kohya)  # nothing dropped

    def modules(prefix, to_peft):
        part = {k[len(prefix) :]: v for k, v in converted.items() if k.startswith(prefix)}
        return {k.split(".lora_A.")[0] for k in to_peft(part) if ".lora_A." in k}

    assert modules("unet.", convert_unet_state_dict_to_peft) == set(targets)
    te_to_peft = lambda d: convert_state_dict_to_peft(convert_state_dict_to_diffusers(d))  # noqa: E731
    assert modules("text_encoder.", te_to_peft) == {te_canonical(n) for n in text_encoder_targets(te1)}
    assert modules("text_encoder_2.", te_to_peft) == {te_canonical(n) for n in text_encoder_targets(te2)}


def test_kohya_module_table_reverses_names(real):
    unet, te1, te2 = real
    table = kohya_module_table(unet, te1, te2)
    for name in unet_targets(unet, "LoCon"):
        assert table[kohya_unet_name(name, unet)] == ("unet", name)
    for index, comp, te in ((1, "text_encoder", te1), (2, "text_encoder_2", te2)):
        for name in text_encoder_targets(te):
            assert table[kohya_te_name(name, index)] == (comp, name)
    assert table["lora_unet_input_blocks_0_0"] == ("unet", "conv_in")
    assert table["lora_unet_label_emb_0_2"] == ("unet", "add_embedding.linear_2")


def test_unknown_names_raise(real):
    unet = real[0]
    with pytest.raises(KeyError):
        unet_to_sgm("time_proj", unet)
    with pytest.raises(KeyError):
        unet_to_sgm("down_blocks.0.resnets.0.nonsense", unet)
    with pytest.raises(ValueError):
        unet_to_sgm("conv_in", {**dict(unet.config), "down_block_types": ["AttnDownBlock2D"] * 3})


# -- what mutation testing found unguarded (benchmarks/RESULTS.md, "Mutation testing") ----------------------------

def test_errors_name_the_module_and_the_side(real):
    unet = real[0]
    with pytest.raises(KeyError, match=r"'time_proj' has no SGM counterpart"):
        unet_to_sgm("time_proj", unet)
    with pytest.raises(KeyError, match=r"'down_blocks\.0\.resnets\.0\.nonsense': not a known part of a resnet \(SGM\)"):
        unet_to_sgm("down_blocks.0.resnets.0.nonsense", unet)
    with pytest.raises(KeyError, match=r"'nonsense\.0' has no diffusers counterpart"):
        sgm_to_unet("nonsense.0", unet)
    with pytest.raises(KeyError, match=r"'input_blocks\.1\.0\.nonsense': not a known part of a resnet \(diffusers\)"):
        sgm_to_unet("input_blocks.1.0.nonsense", unet)
    with pytest.raises(ValueError, match="SDXL has text encoders 1 and 2, not 3"):
        kohya_te_name("encoder.layers.0.mlp.fc1", 3)


def test_the_block_map_reads_every_config_field_that_shapes_it(real):
    config = dict(real[0].config)
    assert unet_to_sgm("mid_block.resnets.1.conv2", config) == "middle_block.2.out_layers.3"
    # mid_block_type missing from an older config: diffusers' default, the SDXL one
    no_mid = {k: v for k, v in config.items() if k != "mid_block_type"}
    assert unet_to_sgm("mid_block.attentions.0.proj_in", no_mid) == "middle_block.1.proj_in"
    with pytest.raises(ValueError, match="mid block type 'UNetMidBlock2DSimpleCrossAttn'"):
        unet_to_sgm("conv_in", {**config, "mid_block_type": "UNetMidBlock2DSimpleCrossAttn"})
    # layers_per_block as a list (one per block) maps as the same int does
    as_list = {**config, "layers_per_block": [config["layers_per_block"]] * len(config["down_block_types"])}
    assert unet_to_sgm("down_blocks.2.attentions.1.proj_out", as_list) == \
        unet_to_sgm("down_blocks.2.attentions.1.proj_out", config) == "input_blocks.8.1.proj_out"
    # a class embedding (SD2.x-style "timestep" labels) lands in label_emb, as sd-scripts names it
    with_class = {**config, "addition_embed_type": None, "class_embed_type": "timestep"}
    assert unet_to_sgm("class_embedding.linear_2", with_class) == "label_emb.0.2"
    with pytest.raises(KeyError):
        unet_to_sgm("class_embedding.linear_2", config)
    with pytest.raises(ValueError, match="addition_embed_type 'text'"):
        unet_to_sgm("conv_in", {**config, "addition_embed_type": "text"})


def test_the_module_table_skips_modules_without_an_sgm_name_and_goes_on():
    # encoder_hid_proj (a Linear with no SGM counterpart) comes before the blocks: everything after it is still named
    unet = _meta_unet(sample_size=8, block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, cross_attention_dim=8,
                      attention_head_dim=2, norm_num_groups=4, encoder_hid_dim=12, encoder_hid_dim_type="text_proj")
    table = kohya_module_table(unet)
    assert "encoder_hid_proj" not in {name for _, name in table.values()}
    assert table["lora_unet_out_2"] == ("unet", "conv_out")
    hosts = [n for n, m in unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert sorted(name for _, name in table.values()) == sorted(set(hosts) - {"encoder_hid_proj"})


def test_the_module_table_is_the_same_with_a_lora_in_place():
    """kohya_module_table sees through peft's wrapping: a LoRA'd layer is one host, its base_layer/lora_A/lora_B are
    not hosts of their own."""
    from diffusers import UNet2DConditionModel

    from colabkit.train.lora import add_lora

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                                cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4)
    plain = kohya_module_table(unet)
    targets = unet_targets(unet, "LoCon")
    add_lora(unet, targets, 2, 1)
    assert any(n.endswith(".lora_A.default") for n, _ in unet.named_modules())  # really wrapped
    assert kohya_module_table(unet) == plain and len(plain) > len(targets) > 0

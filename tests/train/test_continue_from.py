"""continue_from_lora: a new run starting from an existing LoRA file (colabkit's, LoCon, diffusers' own kohya
conversion), its shape taken from the file, every key loaded or named in the preflight, refusals before step 1."""


import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from colabkit.train import lora
from colabkit.train.lora import continue_from as cf
from colabkit.train.lora.metadata import file_model_hash


def tiny_models(tiny_sdxl):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    return (UNet2DConditionModel.from_pretrained(tiny_sdxl, subfolder="unet"),
            CLIPTextModel.from_pretrained(tiny_sdxl, subfolder="text_encoder"),
            CLIPTextModelWithProjection.from_pretrained(tiny_sdxl, subfolder="text_encoder_2"))


def randomize(model):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in lora.lora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def colabkit_file(tiny_sdxl, path, lora_type="LoRA", rank=8, alpha=4, conv_rank=6, conv_alpha=3, te=False):
    """A LoRA as colabkit writes it (fp16, SGM names), with random weights."""
    unet, te1, te2 = tiny_models(tiny_sdxl)
    torch.manual_seed(0)
    lora.add_lora(unet, lora.unet_targets(unet, lora_type), rank, alpha, conv_rank=conv_rank, conv_alpha=conv_alpha)
    randomize(unet)
    if te:
        for m in (te1, te2):
            lora.add_lora(m, lora.text_encoder_targets(m), rank, alpha)
            randomize(m)
    tensors = lora.export_kohya(unet, te1 if te else None, te2 if te else None, alpha=alpha,
                                conv_alpha=conv_alpha if lora_type == "LoCon" else alpha)
    save_file(tensors, str(path), metadata={"ss_network_dim": str(rank)})
    return path


def diffusers_file(tiny_sdxl, path):
    """A peft LoRA on the tiny SDXL's attention, written by diffusers' own convert_state_dict_to_kohya (fp32,
    diffusers block names, alpha = rank as an int64 tensor): not written by colabkit's code."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet, _, _ = tiny_models(tiny_sdxl)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    randomize(unet)
    state = {"unet." + k: v for k, v in get_peft_model_state_dict(unet).items()}
    kohya = convert_state_dict_to_kohya(state)
    assert any(k.startswith("lora_unet_down_blocks_") for k in kohya)  # diffusers' spelling, not SGM's
    save_file({k: v.contiguous() for k, v in kohya.items()}, str(path))
    return path


def read(tiny_sdxl, path, train_te=False, settings=None):
    unet, te1, te2 = tiny_models(tiny_sdxl)
    targets = {"unet": {t: lora.unet_targets(unet, t) for t in ("LoRA", "LoCon")}}
    if train_te:  # as the plan does: the encoders' targets when they train
        for name, te in (("text_encoder", te1), ("text_encoder_2", te2)):
            targets[name] = {t: lora.text_encoder_targets(te) for t in ("LoRA", "LoCon")}
    return cf.read_parent(path, unet, te1, te2, train_text_encoder=train_te, targets=targets,
                          settings=settings or dict(network_dim=4, network_alpha=2, lora_type="LoRA", conv_dim=8,
                                                    conv_alpha=4))


def test_the_file_decides_the_shape_and_the_preflight_says_so(tiny_sdxl, tmp_path):
    parent = read(tiny_sdxl, colabkit_file(tiny_sdxl, tmp_path / "old.safetensors", "LoCon"))
    assert not parent.errors
    assert parent.shape == dict(network_dim=8, network_alpha=4, lora_type="LoCon", conv_dim=6, conv_alpha=3)
    assert parent.warnings[0] == ("the file decides the LoRA's shape: network_dim 4 in the settings, 8 in the file "
                                  "(used); network_alpha 2 in the settings, 4 in the file (used); lora_type LoRA in "
                                  "the settings, LoCon in the file (used); conv_dim 8 in the settings, 6 in the "
                                  "file (used); conv_alpha 4 in the settings, 3 in the file (used).")
    assert parent.fresh == 0 and len(parent.modules) == len(load_file(tmp_path / "old.safetensors")) // 3


def test_diffusers_names_load_and_the_rest_starts_fresh(tiny_sdxl, tmp_path):
    path = diffusers_file(tiny_sdxl, tmp_path / "peft.safetensors")
    parent = read(tiny_sdxl, path)
    assert not parent.errors
    n_attn = len([k for k in load_file(path) if k.endswith(".lora_down.weight")])
    assert len(parent.modules) == n_attn and parent.shape["network_dim"] == 4 and parent.shape["network_alpha"] == 4
    unet = tiny_models(tiny_sdxl)[0]
    assert parent.fresh == len(lora.unet_targets(unet, "LoRA")) - n_attn > 0  # proj_in/out, ff: fresh
    assert f"{parent.fresh} modules the file lacks start fresh" in cf.summary(parent)


def test_a_key_matching_no_module_is_a_preflight_problem_naming_it(tiny_sdxl, tmp_path):
    path = colabkit_file(tiny_sdxl, tmp_path / "old.safetensors")
    tensors = load_file(path)
    tensors["lora_unet_input_blocks_9_9_nowhere.lora_down.weight"] = torch.zeros(8, 32)
    tensors["lora_unet_input_blocks_9_9_nowhere.lora_up.weight"] = torch.zeros(32, 8)
    save_file(tensors, str(path))
    parent = read(tiny_sdxl, path)
    assert parent.errors == ["1 modules of old.safetensors match no module of this base model (a LoRA for another "
                             "model?): lora_unet_input_blocks_9_9_nowhere."]


def test_text_encoder_parts_are_left_out_when_the_encoders_do_not_train(tiny_sdxl, tmp_path):
    path = colabkit_file(tiny_sdxl, tmp_path / "te.safetensors", te=True)
    n_te = len({k.rsplit(".", 2)[0] for k in load_file(path) if k.startswith("lora_te")})
    off = read(tiny_sdxl, path, train_te=False)
    assert not off.errors and off.left_out_te == n_te and all(m.component == "unet" for m in off.modules)
    assert f"{n_te} text-encoder modules of te.safetensors are left out" in off.warnings[-1]
    on = read(tiny_sdxl, path, train_te=True)
    assert not on.errors and on.left_out_te == 0
    assert sum(m.component != "unet" for m in on.modules) == n_te


@pytest.mark.parametrize("make, words", [
    (lambda p: p.with_suffix(".ckpt").write_bytes(b"\x80\x02}q\x00."), "is a pickle"),
    (lambda p: save_file({"model.diffusion_model.out.2.weight": torch.zeros(2)}, str(p)), "is not a LoRA"),
    (lambda p: save_file({"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 2)}, str(p)),
     "Stable Diffusion 1.x/2.x"),
    (lambda p: save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 2)},
                         str(p)), "Stable Diffusion 1.x/2.x"),  # SD 1.5 in diffusers names, no metadata
    (lambda p: save_file({"lora_unet_x.hada_w1_a": torch.zeros(2, 2)}, str(p)), "holds LoHa weights"),
    (lambda p: p.write_bytes(b"not a safetensors file at all"), "is not a .safetensors file"),
])
def test_refused_files(tiny_sdxl, tmp_path, make, words):
    path = tmp_path / "x.safetensors"
    make(path)
    path = path if path.exists() else path.with_suffix(".ckpt")
    parent = read(tiny_sdxl, path)
    assert len(parent.errors) == 1 and words in parent.errors[0], parent.errors


def test_preflight_refuses_before_step_1_and_names_the_file(tiny_project, make_config):
    from colabkit.train.plan import make_plan

    (tiny_project.root / "old.ckpt").write_bytes(b"\x80\x02}q\x00.")
    plan = make_plan(make_config(continue_from_lora="old.ckpt"), device="cpu")
    rows = [n for n in plan.notes if n.name == "continue from"]
    assert [r.level for r in rows] == ["error"] and "old.ckpt is a pickle" in rows[0].message
    own = tiny_project.output / "houtline.safetensors"  # a file the run itself writes: never the parent
    own.parent.mkdir(exist_ok=True)
    own.write_bytes(b"x")
    plan = make_plan(make_config(continue_from_lora=str(own)), device="cpu")
    assert any(n.level == "error" and "rename it first" in n.message for n in plan.notes)
    epoch = own.with_name("houtline-03.safetensors")  # an epoch file: pruned by keep_only_last_n_epochs
    epoch.write_bytes(b"x")
    plan = make_plan(make_config(continue_from_lora=epoch.name), device="cpu")
    assert any(n.level == "error" and "rename it first" in n.message for n in plan.notes)


def _continue_one_step(tiny_project, make_config, parent_path, **changes):
    from colabkit.train.loop import train
    from colabkit.train.plan import make_plan

    cfg = make_config(continue_from_lora=str(parent_path), unet_lr=1e-12, max_train_steps=1, optimizer="AdamW",
                      lr_scheduler="constant", train_batch_size=1, **changes)
    plan = make_plan(cfg, device="cpu")
    assert plan.ok, plan.errors
    result = train(plan)
    assert result.status == "finished" and result.step == 1
    return plan, load_file(result.final_lora), result.final_lora


def _same_within_fp16(got, want):
    torch.testing.assert_close(got.float(), want.float(), rtol=1e-3, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("lora_type, te", [("LoRA", True), ("LoCon", False)])
def test_one_step_at_1e_12_gives_back_a_colabkit_file(tiny_project, make_config, tiny_sdxl, tmp_path, lora_type, te):
    path = colabkit_file(tiny_sdxl, tmp_path / "old.safetensors", lora_type, te=te)
    ref = load_file(path)
    plan, out, final = _continue_one_step(tiny_project, make_config, path,
                                          **({"text_encoder_lr": 1e-12} if te else {}))
    assert plan.run.network_dim == 8 and plan.run.lora_type == lora_type
    assert out.keys() == ref.keys()
    for k in ref:
        _same_within_fp16(out[k], ref[k])
    with safe_open(final, "pt") as f:
        meta = f.metadata()
    assert meta["ss_parent_lora"] == "old.safetensors"
    assert meta["ss_parent_lora_hash"] == file_model_hash(path, {}) == plan.parent.model_hash
    assert meta["ss_network_dim"] == "8"


@pytest.mark.slow
def test_one_step_at_1e_12_gives_back_a_diffusers_converted_file(tiny_project, make_config, tiny_sdxl, tmp_path):
    path = diffusers_file(tiny_sdxl, tmp_path / "peft.safetensors")
    ref = load_file(path)
    plan, out, _ = _continue_one_step(tiny_project, make_config, path)
    unet = tiny_models(tiny_sdxl)[0]
    compared = 0
    for m in plan.parent.modules:  # each diffusers-named module, under its SGM name in the new file
        sgm = lora.kohya_unet_name(m.module, unet)
        _same_within_fp16(out[sgm + ".lora_down.weight"], ref[m.name + ".lora_down.weight"])
        _same_within_fp16(out[sgm + ".lora_up.weight"], ref[m.name + ".lora_up.weight"])
        assert float(out[sgm + ".alpha"]) == float(ref[m.name + ".alpha"]) == 4.0
        compared += 1
    assert compared == len(ref) // 3
    fresh = [k for k in out if k.endswith(".lora_up.weight") and not out[k].any()]
    assert len(fresh) == plan.parent.fresh > 0  # the modules the file lacked start fresh (B = 0)

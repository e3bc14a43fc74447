"""GPU rehearsal without a GPU: one real-size SDXL LoRA training step on a simulated CUDA device.

SDXL base 1.0's UNet at its real shapes (colabkit/configs/sdxl-base-1.0), fp16 weights, LoRA dim 16 / alpha 8 in
fp32 on sd-scripts' targets, 1024 px, batch 2, text-encoder outputs cached (only the UNet on the device),
gradient checkpointing on and off, goes through colabkit's own step code (``loop.micro_batch_loss``: the fp32
forward process, the fp16 UNet input, autocast, min-SNR; then ``loop.optimizer_step`` with a real
``torch.amp.GradScaler("cuda")``) under torch's FakeTensorMode on device "cuda": every tensor has its real
shape, dtype and device and no data, so the step takes seconds on a CPU and the CUDA-only branches run
(autocast's fp16 casts, the scaler's CUDA kernels, SDPA's CUDA attention kernels), catching device and dtype
mix-ups there.

It needs a CUDA build of torch (a CPU-only build refuses factory functions on a fake "cuda") but no GPU:

    python -m venv /work/venvs/cuda && /work/venvs/cuda/bin/pip install torch==2.14.1
    /work/venvs/cuda/bin/pip install -c constraints/colab.txt diffusers transformers peft accelerate \
        safetensors huggingface_hub numpy pillow tqdm packaging
    PYTHONPATH=$PWD /work/venvs/cuda/bin/python benchmarks/rehearse_cuda.py [--resolution 1024] [--batch 2]

What is measured, and how (bytes of tensors, as torch.cuda.memory_allocated counts them, in GiB):
- live bytes: a TorchDispatchMode under the fake mode records each output's storage (StorageWeakRef) and, after
  every op, drops the storages that died: the peak of the forward is exact for the ops that ran.
- kept for backward: what is still alive when the loss exists (autograd's saved tensors, and with checkpointing
  the inputs each checkpointed block keeps); torch.autograd.graph.saved_tensors_hooks counts what autograd saves
  outside checkpointed blocks, as a cross-check.
- the backward itself cannot run here (the autograd engine wants a real device: "hasPrimaryContext expects a
  valid device index"). Its peak is composed from measured pieces: kept for backward + (with checkpointing) the
  largest recompute of one block, measured as that block's own forward peak in the run without checkpointing
  (what the recompute rebuilds before its backward) + gradients in flight, two of the largest activation tensor
  (the gradient arriving and the one leaving a layer) + the LoRA's fp32 gradients.
- on paper, because they cannot run under fake tensors: bitsandbytes' AdamW8bit state (its kernels are CUDA
  code, not torch ops: 2 bytes a parameter, the plan's figure; the step here runs torch's AdamW), the CUDA
  context and cuBLAS/cuDNN workspaces (memory.FIXED_GB) and the caching allocator's fragmentation
  (memory.FRAGMENTATION): the plan's own terms, shown beside the measured ones, not measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GIB = 2**30


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--tokens", type=int, default=75, choices=(75, 150, 225),
                   help="caption token length (75: 77 positions)")
    p.add_argument("--checkpointing", choices=("on", "off", "both"), default="both")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    import torch

    if not torch.backends.cuda.is_built():
        raise SystemExit("This needs a CUDA build of torch (no GPU needed): see the docstring.")
    # autocast and GradScaler switch themselves off where no GPU is found; the simulated device is "there"
    torch.cuda.amp.common.amp_definitely_not_available = lambda: False

    runs = {}
    for ckpt in ((True, False) if args.checkpointing == "both" else (args.checkpointing == "on",)):
        t0 = time.perf_counter()
        runs["on" if ckpt else "off"] = rehearse(args.resolution, args.batch, args.rank, args.tokens, ckpt)
        runs["on" if ckpt else "off"]["seconds"] = round(time.perf_counter() - t0, 1)
    if "on" in runs and "off" in runs:  # the recompute under checkpointing is a block's forward without it
        runs["on"]["recompute_gb"] = runs["off"]["largest_block_forward_gb"]
    for name, r in runs.items():
        finish(r, args, checkpointing=name == "on")
    print(json.dumps(runs, indent=1))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")
    return 0


class LiveBytes:
    """Live tensor bytes under a fake mode: each storage counted from the op that makes it to the death of its last
    tensor (a weakref callback; autograd's saved tensors keep theirs alive), peak taken after every op."""

    def __init__(self):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.values_for_item = False

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func is torch.ops.aten._local_scalar_dense.default and tracker.values_for_item:
                    # .item() of a fake tensor has no value: the optimizer step's checks read one (the scale, "all
                    # finite?", "inf found?"): True for a bool, 0 otherwise, i.e. a clean step that is taken
                    return True if args[0].dtype == torch.bool else 0
                out = func(*args, **(kwargs or {}))
                tracker.after(func, out)
                return out

        self.mode = Mode()
        self.seen: set[int] = set()  # id() of the tensors counted and still alive
        self.tensors: dict[int, int] = {}  # storage key -> live tensors on it
        self.nbytes: dict[int, int] = {}
        self.permanent: set[int] = set()  # weights: counted apart
        self.now = self.peak = 0
        self.largest = 0  # the largest single activation storage
        self.ops: dict[str, int] = {}
        self.block_stack: list[list[int]] = []  # [live at entry, peak inside] per block being run

    @staticmethod
    def key(t):
        st = t.untyped_storage()
        return st._cdata, st.nbytes()

    def mark_permanent(self, tensors) -> int:
        total = 0
        for t in tensors:
            k, n = self.key(t)
            if k not in self.permanent:
                self.permanent.add(k)
                total += n
        return total

    def release(self, k: int, tid: int) -> None:
        self.seen.discard(tid)
        self.tensors[k] -= 1
        if not self.tensors[k]:
            del self.tensors[k]
            self.now -= self.nbytes.pop(k)

    def after(self, func, out) -> None:
        import weakref

        import torch
        from torch.utils._pytree import tree_leaves

        name = str(func.overloadpacket.__name__)
        if "attention" in name or name in ("bmm", "baddbmm"):
            self.ops[name] = self.ops.get(name, 0) + 1
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cuda" or id(t) in self.seen:
                continue
            k, n = self.key(t)
            if k in self.permanent:
                continue
            self.seen.add(id(t))
            if k not in self.tensors:
                self.tensors[k] = 0
                self.nbytes[k] = n
                self.now += n
                self.largest = max(self.largest, n)
            self.tensors[k] += 1
            weakref.finalize(t, self.release, k, id(t))
        self.peak = max(self.peak, self.now)
        for frame in self.block_stack:
            frame[1] = max(frame[1], self.now)

    def sweep(self) -> int:
        import gc

        gc.collect()  # reference cycles (autograd graphs of dead outputs) would otherwise linger
        return self.now


@contextlib.contextmanager
def module_to_by_data():
    """Module.to that sets each parameter's .data: the real one swaps parameters, which fake ones refuse (the fake
    mode holds weakrefs to them); peft moves every new adapter with it."""
    import itertools

    import torch

    real = torch.nn.Module.to

    def to(self, *args, **kwargs):
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        for t in itertools.chain(self.parameters(), self.buffers()):
            t.data = t.data.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)
        return self

    torch.nn.Module.to = to
    try:
        yield
    finally:
        torch.nn.Module.to = real


@contextlib.contextmanager
def t4_attention():
    """SDPA as a T4 runs it: PyTorch's memory-efficient kernel (flash attention needs sm80; a T4 is sm75).
    Without a device SDPA's backend choice falls back to the math path, which keeps the N x N attention matrix
    (0.67 GB per layer at 1024 px, batch 2) where the kernel keeps q, k, v, output and its logsumexp."""
    import torch
    import torch.nn.functional as F

    real = F.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        if attn_mask is not None or dropout_p or is_causal or kw:
            return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **kw)
        return torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, scale=scale)[0]

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = real


def rehearse(resolution: int, batch: int, rank: int, tokens: int, checkpointing: bool) -> dict:
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.resnet import ResnetBlock2D
    from torch._subclasses.fake_tensor import FakeTensorMode

    from colabkit.train import lora
    from colabkit.train.loop import grad_scaler, micro_batch_loss, optimizer_step
    from colabkit.train.models.load import SDXL_CONFIGS
    from colabkit.train.noise import training_scheduler

    config = json.loads((SDXL_CONFIGS / "unet" / "config.json").read_text())
    sched_cfg = json.loads((SDXL_CONFIGS / "scheduler" / "scheduler_config.json").read_text())
    scheduler = training_scheduler(sched_cfg, "epsilon", False)  # real (CPU) tensors: its alphas_cumprod
    live = LiveBytes()
    saved: dict[int, int] = {}
    blocks: list[float] = []

    def pack(t):
        k, n = live.key(t)
        if k not in live.permanent:
            saved[k] = n
        return t

    with FakeTensorMode(allow_non_fake_inputs=True), torch.device("cuda"), module_to_by_data(), t4_attention():
        torch.set_default_dtype(torch.float16)
        try:
            unet = UNet2DConditionModel.from_config(config)  # fp16 weights, as load_sdxl gives them on a T4
        finally:
            torch.set_default_dtype(torch.float32)
        unet.requires_grad_(False)
        torch.manual_seed(0)
        lora.add_lora(unet, lora.unet_targets(unet, "LoRA"), rank, rank // 2)
        params = lora.lora_parameters(unet)
        for p_ in params:
            p_.data = p_.data.float()  # as the loop does: LoRA weights train in fp32 on fp16 weights
        if checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        weights = live.mark_permanent([t for t in unet.parameters()] + [t for t in unet.buffers()])
        lora_bytes = sum(p_.numel() * 4 for p_ in params)
        hooks = []
        if not checkpointing:  # each checkpointable block's own forward peak: what a recompute rebuilds
            def enter(module, inputs):
                live.block_stack.append([live.sweep(), live.now])

            def leave(module, inputs, output):
                start, peak = live.block_stack.pop()
                blocks.append(peak - start)
            for m in unet.modules():
                if isinstance(m, (ResnetBlock2D, BasicTransformerBlock)):
                    hooks += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]

        with live.mode:
            lat = torch.randn(batch, 4, resolution // 8, resolution // 8)  # cached latents: fp32
            noise = torch.randn_like(lat)
            timesteps = torch.randint(0, 1000, (batch,))
            embeds = torch.randn(batch, tokens + 2, 2048, dtype=torch.float16)  # cached text outputs, fp16
            pooled = torch.randn(batch, 1280, dtype=torch.float16)
            add_time = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]] * batch,
                                    dtype=torch.float16)
            inputs = live.sweep()
            scheduler.alphas_cumprod = scheduler.alphas_cumprod.to("cuda")
            accelerator = type("A", (), {"mixed_precision": "fp16", "device": torch.device("cuda")})()
            scaler = grad_scaler(accelerator)  # the loop's own: torch.amp.GradScaler("cuda")
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = micro_batch_loss(unet, scheduler, lat, noise, timesteps, embeds, pooled, add_time,
                                        prediction="epsilon", min_snr_gamma=5.0, weight_dtype=torch.float16,
                                        autocast=lambda: torch.autocast("cuda", dtype=torch.float16))
                scaled = scaler.scale(loss)
            assert loss.dtype == torch.float32 and loss.device.type == "cuda", (loss.dtype, loss.device)
            forward_peak = live.peak
            kept = live.sweep()
            # The backward cannot run here; give every LoRA weight its fp32 gradient and take the optimizer step
            # the loop takes (unscale, finiteness, clipping, scaler step, LR schedule), on the simulated device.
            for p_ in params:
                p_.grad = torch.zeros_like(p_)
            live.values_for_item = True
            optimizer = torch.optim.AdamW(params, lr=1e-4, capturable=True)  # its step count stays a tensor
            lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
            outcome = optimizer_step(optimizer, lr_sched, params, 1.0, scaler, 0.1)
        for h in hooks:
            h.remove()
        del scaled
    return {
        "resolution": resolution, "batch": batch, "rank": rank, "tokens": tokens + 2,
        "checkpointing": checkpointing, "unet_weights_gb": (weights - lora_bytes) / GIB,
        "lora_params": sum(p_.numel() for p_ in params),
        "lora_fp32_gb": lora_bytes / GIB, "inputs_gb": inputs / GIB,
        "forward_peak_gb": forward_peak / GIB, "kept_for_backward_gb": kept / GIB,
        "saved_by_autograd_gb": sum(saved.values()) / GIB, "largest_tensor_gb": live.largest / GIB,
        "largest_block_forward_gb": max(blocks) / GIB if blocks else None,
        "attention_ops": live.ops, "optimizer_step": outcome,
    }


def finish(r: dict, args, checkpointing: bool) -> None:
    """The backward's peak from the measured pieces, the total next to memory.py's plan for the same run."""
    from colabkit.train import memory

    # with checkpointing, one block's forward is rebuilt before its backward (measured by the run without it:
    # --checkpointing both); without, nothing is recomputed
    recompute = (r.get("recompute_gb") or 0.0) if checkpointing else 0.0
    in_flight = 2 * r["largest_tensor_gb"]
    backward_peak = r["kept_for_backward_gb"] + recompute + in_flight + r["lora_fp32_gb"]  # + the LoRA's grads
    activations = max(r["forward_peak_gb"], backward_peak)
    plan = memory.estimate_vram(resolution=args.resolution, batch_size=args.batch, network_dim=args.rank,
                                gradient_checkpointing=checkpointing, optimizer="AdamW8bit", sample_images=False,
                                mixed_precision="fp16")
    # the optimizer's 8-bit state (bitsandbytes, not run here) and autocast's fp16 copy of the LoRA, as the plan counts
    lora_total = r["lora_fp32_gb"] * (1 + 1 + 2 / 4 + 2 / 4)  # fp32 weights + fp32 grads + 8-bit state + fp16 copy
    simulated = r["unet_weights_gb"] + lora_total + activations
    planned = plan.parts["unet weights"] + plan.parts["lora + optimizer"] + plan.parts["activations"]
    r.update(backward_peak_gb=backward_peak, activations_gb=activations, simulated_allocated_gb=simulated,
             plan_allocated_gb=planned, plan_activations_gb=plan.parts["activations"],
             plan_total_gb=plan.total_gb, plan_parts=plan.parts,
             simulated_total_gb=simulated + plan.parts["fixed"] + activations * memory.FRAGMENTATION,
             activations_over_plan=activations / plan.parts["activations"])
    for k, v in list(r.items()):
        if isinstance(v, float):
            r[k] = round(v, 3)


if __name__ == "__main__":
    raise SystemExit(main())

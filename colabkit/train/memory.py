"""Peak GPU memory of an SDXL LoRA training step, estimated before anything is loaded (pure functions).

The model, in GiB (written "GB", as nvidia-smi and torch report them):

    total = fixed + weights + trainable + step * (1 + FRAGMENTATION) [+ what preview images add beyond the step]

- fixed: CUDA context and cuBLAS/cuDNN workspaces (FIXED_GB).
- weights: frozen UNet at the weight dtype (2 bytes/parameter in fp16/bf16, 4 in fp32); the text encoders too
  when their outputs are not cached (or they are trained); the float32 VAE when latents are not cached.
- trainable: the LoRA parameters with fp32 master weights, fp32 gradients and the optimizer's state.
- step: the largest of (UNet forward+backward activations [+ text-encoder activations when trained]) and (the
  float32 VAE encoding a batch, when latents are not cached): they never overlap in time.
- preview images (between steps, when on): the text encoders and VAE come back to the GPU and the VAE decodes a
  full-size image (float32: ~3 GB at 1024 px, the biggest single transient of a run); counted where it exceeds
  the training step.

UNet activations are counted tensor by tensor on SDXL's real architecture (levels of 320/640/1280 channels at 1/8,
1/16, 1/32 of the image, 2 resnets per down block and 3 per up block, 2 and 10 transformer layers per attention at
the two lower levels) as the bytes autograd keeps for backward under fp16 autocast with diffusers' modules:
group/layer norms keep a float32 copy of their input, linears keep their (cast) input, attention (PyTorch SDPA:
memory-efficient/flash kernels, no N x N matrix) keeps q, k, v and its output, GEGLU keeps its 8C-wide projection.
With gradient checkpointing (diffusers checkpoints every resnet and every transformer layer) only each unit's input
is kept, plus one unit recomputed at a time during backward.

Calibration, public figures (SDXL at 1024 px, LoRA on the UNet, latents and text-encoder outputs cached):
- kohya-ss/sd-scripts' SDXL notes: LoRA training "can be done with 8GB GPU memory (10GB recommended)" with
  gradient checkpointing, cached latents/text-encoder outputs and an 8-bit optimizer, batch 1.
- Colab T4 reports for the same setup (batch 1, fp16, AdamW8bit): about 10-12 GB in nvidia-smi, and it fits.
- without gradient checkpointing the same run does not fit a 16 GB card; batch 4 without it needs 24 GB and more.
The tensor count gives ~6.8 GB allocated for the first setup at dim 32; with FIXED_GB (context, workspaces) and
FRAGMENTATION (what the caching allocator reserves beyond what is allocated) the estimate is ~8.1 GB without
preview images (sd-scripts: 8, 10 recommended) and ~12 GB with float32 preview images at 1024 (the T4 reports);
without checkpointing ~19.7 GB (> 16), batch 4 without it ~59 GB (> 24). Tests pin these calibration points;
the estimate is meant to be within ~1.5 GB and rather high than low (a preflight that says "fits" must be right).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colabkit.train.models.meta import SDXL_PARAMS

GIB = 2**30
T4_GB = 14.75  # what torch sees on a free Colab T4 (15,360 MiB card)

SDXL_UNET_PARAMS = SDXL_PARAMS["unet"]
SDXL_TE_PARAMS = SDXL_PARAMS["text_encoder"] + SDXL_PARAMS["text_encoder_2"]
SDXL_VAE_PARAMS = SDXL_PARAMS["vae"]

# LoRA sizes, counted on the real SDXL built on the meta device (tests recount them):
# sum of (in + out) over the layers each kind of LoRA wraps; a rank-r LoRA there has r * that many parameters.
UNET_ATTN_LINEAR_IO = 2_659_840  # 722 Linear layers inside the Transformer2DModel blocks ("LoRA")
UNET_RESNET_CONV3_IO = 355_840  # 38 3x3 convs of resnets/down/upsamplers, in*9 + out ("LoCon" conv_dim)
UNET_RESNET_OTHER_IO = 58_560  # their 1x1 shortcut convs and time-embedding linears (LoCon, network_dim)
TE_LINEAR_IO = 165_888 + 737_280  # q/k/v/out/fc1/fc2 of the 12 + 32 CLIP layers (264 modules)

FIXED_GB = 1.0  # CUDA context with cuDNN/cuBLAS loaded (~0.5-0.7 on a T4) + their workspaces
FRAGMENTATION = 0.35  # reserved / allocated - 1 on the transient tensors of a step (calibrated, see above)
SAMPLING_OVERHEAD = 0.10  # the same for preview images: a few big, short-lived tensors fragment little

# Bytes of optimizer state per trainable parameter (fp32 master weights and gradients are counted apart).
OPTIMIZER_STATE_BYTES = {
    "adamw": 8.0,  # two fp32 moments
    "adamw8bit": 2.0,  # two 8-bit moments (bitsandbytes) + negligible block scales
    "prodigy": 16.0,  # exp_avg, exp_avg_sq, s, p0
    "adafactor": 1.0,  # factored second moment, no first moment: a few bytes per row/column
    "lion": 4.0,
    "lion8bit": 1.0,
    "sgd": 4.0,
    "dadaptadam": 16.0,
}


@dataclass(frozen=True)
class UNetShape:
    """What the activation count needs of a UNet's architecture (SDXL's, or the resolved model's own config)."""
    channels: tuple[int, ...] = (320, 640, 1280)
    depth: tuple[int, ...] = (0, 2, 10)  # transformer layers per attention block at each level (0: none)
    layers_per_block: int = 2
    context_dim: int = 2048
    context_tokens: int = 77  # text tokens the cross-attention sees (77 per 75-token chunk)

    @classmethod
    def from_config(cls, config: dict, context_tokens: int = 77) -> "UNetShape":
        """From a diffusers UNet2DConditionModel config (its unet/config.json)."""
        channels = tuple(int(c) for c in config["block_out_channels"])
        tl = config.get("transformer_layers_per_block", 1)
        tl = list(tl) if isinstance(tl, (list, tuple)) else [tl] * len(channels)
        kinds = config.get("down_block_types", ["CrossAttnDownBlock2D"] * len(channels))
        depth = tuple(int(n) if "CrossAttn" in kind else 0 for n, kind in zip(tl, kinds))
        return cls(channels, depth, int(config.get("layers_per_block", 2)), int(config["cross_attention_dim"]),
                   context_tokens)


SDXL_SHAPE = UNetShape()  # colabkit/configs/sdxl-base-1.0/unet/config.json


@dataclass(frozen=True)
class VramPlan:
    total_gb: float
    parts: dict[str, float]  # GB per item; they add up to total_gb
    gpu_gb: float  # the GPU the advice was written for
    advice: list[str] = field(default_factory=list)  # empty when it fits gpu_gb

    def fits(self, gpu_gb: float | None = None) -> bool:
        return self.total_gb <= (self.gpu_gb if gpu_gb is None else gpu_gb)

    def summary(self) -> str:
        items = ", ".join(f"{k} {v:.1f}" for k, v in self.parts.items() if v >= 0.05)
        return f"about {self.total_gb:.1f} GB of GPU memory ({items})"


def estimate_vram(*, unet_params: int = SDXL_UNET_PARAMS, te_params: int = SDXL_TE_PARAMS,
                  vae_params: int = SDXL_VAE_PARAMS, unet_shape: UNetShape = SDXL_SHAPE,
                  resolution: int | tuple[int, int] = 1024, batch_size: int = 1, network_dim: int = 16,
                  lora_type: str = "LoRA", train_text_encoder: bool = False, mixed_precision: str = "fp16",
                  gradient_checkpointing: bool = True, cache_latents: bool = True,
                  cache_text_embeddings: bool = True, optimizer: str = "AdamW8bit", conv_dim: int | None = None,
                  sample_images: bool = True, vae_fp16_fix: bool = False, gpu_gb: float = T4_GB) -> VramPlan:
    """Estimated peak GPU memory of SDXL LoRA training, with advice when it exceeds ``gpu_gb``.

    ``resolution``: the side of a square bucket, or (width, height). ``mixed_precision``: 'fp16', 'bf16' or 'no'
    (fp32 everywhere). ``lora_type``: 'LoRA' (attention linears) or 'LoCon' (plus resnet convs at ``conv_dim``,
    default ``network_dim``). Text-encoder outputs cannot be cached while the encoders train: then they count as
    not cached. ``sample_images``: preview images are made between steps (text encoders and VAE come back to the
    GPU and the VAE decodes a full-size image: float32, or fp16 with ``vae_fp16_fix``).
    ``unet_params``/``te_params``/``vae_params``/``unet_shape``: the model's own (default: SDXL base 1.0's).
    """
    kw = dict(unet_params=unet_params, te_params=te_params, vae_params=vae_params, unet_shape=unet_shape,
              resolution=resolution, batch_size=batch_size,
              network_dim=network_dim, lora_type=lora_type, train_text_encoder=train_text_encoder,
              mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
              cache_latents=cache_latents, cache_text_embeddings=cache_text_embeddings, optimizer=optimizer,
              conv_dim=conv_dim, sample_images=sample_images, vae_fp16_fix=vae_fp16_fix)
    parts = _parts(**kw)
    total = round(sum(parts.values()), 2)
    advice = [] if total <= gpu_gb else _advice(kw, total, gpu_gb)
    if mixed_precision == "bf16" and gpu_gb <= T4_GB + 0.5:
        advice.append("A T4 has no native bf16: use mixed_precision fp16 there.")
    if train_text_encoder and cache_text_embeddings:
        advice.append("Text-encoder outputs cannot be cached while the text encoders train; counted as not cached.")
    return VramPlan(total, parts, gpu_gb, advice)


def _size(resolution: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(resolution, (tuple, list)):
        w, h = int(resolution[0]), int(resolution[1])
    else:
        w = h = int(resolution)
    if w <= 0 or h <= 0:
        raise ValueError(f"resolution must be positive, got {resolution!r}")
    return w, h


def _parts(*, unet_params, te_params, vae_params, unet_shape, resolution, batch_size, network_dim, lora_type, train_text_encoder,
           mixed_precision, gradient_checkpointing, cache_latents, cache_text_embeddings, optimizer,
           conv_dim, sample_images, vae_fp16_fix) -> dict[str, float]:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    precision = mixed_precision.lower()
    if precision not in ("fp16", "bf16", "no", "fp32"):
        raise ValueError(f"mixed_precision must be 'fp16', 'bf16' or 'no', got {mixed_precision!r}")
    half = precision in ("fp16", "bf16")
    wbytes = 2 if half else 4
    w, h = _size(resolution)
    locon = lora_type.lower() in ("locon", "lycoris", "loha", "lokr")
    te_on_gpu = train_text_encoder or not cache_text_embeddings

    lora_params = network_dim * UNET_ATTN_LINEAR_IO
    if locon:
        lora_params += (conv_dim or network_dim) * UNET_RESNET_CONV3_IO + network_dim * UNET_RESNET_OTHER_IO
    if train_text_encoder:
        lora_params += network_dim * TE_LINEAR_IO
    state = OPTIMIZER_STATE_BYTES.get(optimizer.lower().replace("-", "").replace("_", ""), 8.0)
    # fp32 master + fp32 grad + optimizer state, and the half-precision copy autocast makes for each forward.
    trainable = lora_params * (4 + 4 + state + (2 if half else 0))

    act = _unet_activation_bytes(w, h, half=half, lora=True, checkpointing=gradient_checkpointing,
                                 shape=unet_shape) * batch_size
    if train_text_encoder:
        act += _text_encoder_activation_bytes(half) * batch_size
    vae_step = 0.0 if cache_latents else _vae_encode_bytes(w, h) * batch_size
    step = max(act, vae_step)
    te_bytes = te_params * wbytes
    vae_bytes = vae_params * (2 if vae_fp16_fix else 4)

    parts = {
        "fixed": FIXED_GB,
        "unet weights": unet_params * wbytes / GIB,
        "text encoders": te_bytes / GIB if te_on_gpu else 0.0,
        "vae": vae_bytes / GIB if not cache_latents else 0.0,
        "lora + optimizer": trainable / GIB,
        "activations": step / GIB,
        "allocator overhead": step * FRAGMENTATION / GIB,
    }
    if sample_images:
        # Between steps the training activations are gone; what comes back is whatever is not on the GPU yet
        # (text encoders, VAE) and the VAE decoding one image at full size, plus the UNet's no-grad forward.
        back = (0.0 if te_on_gpu else te_bytes) + (0.0 if not cache_latents else vae_bytes)
        transient = _vae_decode_bytes(w, h, half=vae_fp16_fix) + _unet_inference_bytes(w, h)
        sample_peak = back + transient * (1 + SAMPLING_OVERHEAD)
        parts["sampling (beyond training)"] = max(0.0, sample_peak - step * (1 + FRAGMENTATION)) / GIB
    return {k: round(v, 3) for k, v in parts.items()}


def _unet_activation_bytes(width: int, height: int, *, half: bool, lora: bool, checkpointing: bool,
                           shape: UNetShape = SDXL_SHAPE) -> float:
    """Bytes autograd holds at the peak of one sample's UNet forward+backward (see the module docstring)."""
    a = 2 if half else 4  # bytes of an activation under autocast
    f = 4  # norms compute and keep float32
    lat_w, lat_h = width / 8, height / 8
    units: list[tuple[float, float, bool]] = []  # (bytes kept without checkpointing, bytes kept with it, checkpointed)

    def tokens(level: int) -> float:
        return (lat_w / 2**level) * (lat_h / 2**level)

    def resnet(c_in: int, c_out: int, hw: float) -> None:
        # GN (fp32 copy) -> SiLU (keeps fp32 input) -> conv (keeps cast input), twice; 1x1 shortcut keeps x.
        full = ((2 * f + a) * (c_in + c_out) + (a * c_in if c_in != c_out else 0)) * hw
        units.append((full, a * c_in * hw, True))

    def attention(c: int, depth: int, n: float) -> None:
        # Wrapper (not checkpointed): GroupNorm fp32 copy, proj_in cast input (and its LoRA's), proj_out input.
        wrapper = (f + (3 if lora else 2) * a) * c * n
        units.append((wrapper, wrapper, False))
        # Per transformer layer: 3 LayerNorms (fp32 copy each), q/k/v casts (3), q,k,v,out and the out reshape
        # (5) for self-attention, q,out,reshape (3) for cross-attention, GEGLU 8C + gelu 4C + product 4C (16),
        # two more casts (attn2.to_q, ff in) (2); LoRA down-projections re-cast their fp32 inputs (5 more).
        per = (3 * f + (29 + (5 if lora else 0)) * a) * c * n
        ctx = 2 * shape.context_tokens * shape.context_dim * a  # k, v of the cross-attention context (77 tokens)
        for _ in range(depth):
            units.append((per + ctx, a * c * n, True))

    chans = shape.channels
    c0, c2 = chans[0], chans[-1]
    depth = shape.depth
    # Down path: level l keeps resnets at chans[l]; skip connections are the outputs kept for the up path.
    skips = [c0]  # conv_in output
    c_prev = c0
    for level, c in enumerate(chans):
        n = tokens(level)
        for _ in range(shape.layers_per_block):
            resnet(c_prev, c, n)
            c_prev = c
            if depth[level]:
                attention(c, depth[level], n)
            skips.append(c)
        if level < len(chans) - 1:
            units.append((a * c * n, a * c * n, False))  # downsampler conv keeps its input
            skips.append(c)
    # Middle: resnet, attention, resnet at the lowest level.
    n = tokens(len(chans) - 1)
    resnet(c2, c2, n)
    attention(c2, depth[-1], n)
    resnet(c2, c2, n)
    # Up path: 3 resnets per level, each fed by the previous output concatenated with a skip connection.
    c_prev = c2
    for level in reversed(range(len(chans))):
        c = chans[level]
        n = tokens(level)
        for _ in range(shape.layers_per_block + 1):
            resnet(c_prev + skips.pop(), c, n)
            c_prev = c
            if depth[level]:
                attention(c, depth[level], n)
        if level > 0:
            units.append((a * c * tokens(level - 1), a * c * tokens(level - 1), False))  # upsampler conv input
    # Output: GroupNorm -> SiLU -> conv_out.
    units.append(((2 * f + a) * c0 * tokens(0), (2 * f + a) * c0 * tokens(0), False))

    biggest_tensor = max(8 * c * tokens(i) for i, c in enumerate(chans)) * a  # widest activation (GEGLU or 8-ch res)
    if not checkpointing:
        # Everything kept at once, plus gradients in flight through the widest layer during backward.
        return sum(u[0] for u in units) + 2 * biggest_tensor
    recompute = max(u[0] for u in units if u[2])  # one unit's activations rebuilt at a time during backward
    return sum(u[1] for u in units) + recompute + 2 * biggest_tensor


def _text_encoder_activation_bytes(half: bool) -> float:
    """Activations of both CLIP encoders for one caption when they are trained (77 tokens: small next to the UNet)."""
    a, f, n = (2 if half else 4), 4, 77
    per_layer = lambda c: (2 * f + 26 * a) * c * n  # noqa: E731 - 2 LayerNorms, attention, 4C MLP, LoRA casts
    return 12 * per_layer(768) + 32 * per_layer(1280)


def _vae_encode_bytes(width: int, height: int) -> float:
    """Peak of encoding one image with the float32 VAE under no_grad: ~4 live 128-channel full-size tensors."""
    return 4 * 128 * width * height * 4


def _vae_decode_bytes(width: int, height: int, *, half: bool) -> float:
    """Peak of decoding one image: the last up block works at full size on 256 -> 128 channels; its first resnet
    holds input, norm output and activation at 256 channels at once (~6 x 128 channels of full-size tensors)."""
    return 6 * 128 * width * height * (2 if half else 4)


def _unet_inference_bytes(width: int, height: int) -> float:
    """No-grad UNet forward with classifier-free guidance (batch 2): a few of the widest tensors alive at a time."""
    return 2 * 4 * 8 * 640 * (width / 16) * (height / 16) * 2


def _advice(kw: dict, total: float, gpu_gb: float) -> list[str]:
    """Concrete changes that bring the estimate under ``gpu_gb``, each with its new estimate, best first."""

    def with_(**changes) -> float:
        return round(sum(_parts(**{**kw, **changes}).values()), 2)

    out: list[tuple[float, str]] = []
    if not kw["gradient_checkpointing"]:
        out.append((with_(gradient_checkpointing=True), "turn on gradient_checkpointing"))
    if not kw["cache_text_embeddings"] and not kw["train_text_encoder"]:
        out.append((with_(cache_text_embeddings=True), "cache the text embeddings (shuffle_tags off)"))
    if kw["train_text_encoder"]:
        out.append((with_(train_text_encoder=False, cache_text_embeddings=True),
                    "train the UNet only (text_encoder_lr 0) so the text encoders' outputs can be cached"))
    if not kw["cache_latents"]:
        out.append((with_(cache_latents=True), "cache the latents"))
    if kw["batch_size"] > 1:
        fits = [b for b in range(kw["batch_size"] - 1, 0, -1) if with_(batch_size=b) <= gpu_gb]
        b = fits[0] if fits else 1
        out.append((with_(batch_size=b), f"lower train_batch_size to {b} (raise gradient_accumulation_steps to "
                                         "keep the effective batch)"))
    if kw["optimizer"].lower() in ("adamw", "prodigy", "dadaptadam"):
        out.append((with_(optimizer="AdamW8bit"), "use the AdamW8bit optimizer"))
    w, h = _size(kw["resolution"])
    for side in (896, 768, 640, 512):
        if side < max(w, h):
            scale = side / max(w, h)
            new = (int(w * scale) // 64 * 64 or 64, int(h * scale) // 64 * 64 or 64)
            res = new[0] if new[0] == new[1] else new
            est = with_(resolution=res)
            if est <= gpu_gb or side == 512:
                out.append((est, f"lower the resolution to {side}"))
                break
    if kw["network_dim"] > 16:
        out.append((with_(network_dim=16), "lower network_dim to 16"))
    if kw["mixed_precision"].lower() in ("no", "fp32"):
        out.append((with_(mixed_precision="fp16"), "train in fp16 mixed precision"))
    if kw["sample_images"]:
        if not kw["vae_fp16_fix"]:
            out.append((with_(vae_fp16_fix=True), "use vae_fp16_fix (preview images decoded in fp16)"))
        out.append((with_(sample_images=False), "turn off preview images (sample_every_n_epochs 0)"))
    out = [(est, what) for est, what in out if est < total - 0.05]  # only changes that help
    out.sort(key=lambda t: t[0])
    tips = [f"{what[0].upper()}{what[1:]}: about {est:.1f} GB." for est, what in out]
    if out and all(est > gpu_gb for est, _ in out):
        tips.append("No single change is enough: combine them (gradient checkpointing, batch 1, cached text "
                    "embeddings and latents, 8-bit optimizer).")
    return tips

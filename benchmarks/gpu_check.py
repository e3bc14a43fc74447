"""GPU check: the default recipe on random real-shape SDXL weights, on a GPU made to look like a free Colab T4.

What it does (one process, under 8 minutes on a T4-class GPU or faster):

1. builds SDXL base 1.0's networks (UNet, both CLIP text encoders, VAE; shapes from colabkit/configs) with random
   weights directly on the GPU in fp16, and saves them as a diffusers folder on local disk (tokenizers: the
   built-in character tokenizer, enough for random weights);
2. emulates a T4: usable memory capped at 15 GB (``torch.cuda.set_per_process_memory_fraction``), fp16 only,
   TF32 off;
3. runs colabkit's real training path (``colabkit.train.plan.make_plan`` + ``colabkit.train.loop.train``) with
   the default TrainConfig (1024 px, batch 2, AdamW8bit, gradient checkpointing as the plan decides) for
   ``--steps`` steps on a few generated drawings, one epoch-end preview included;
4. prints s/step (median after warm-up), peak VRAM (allocated and reserved) next to the plan's estimate, the
   latent-caching time and the preview time, and the preflight's time estimate for comparison.

    bash benchmarks/gpu_check.sh                 # or: python benchmarks/gpu_check.py --steps 30
    python benchmarks/gpu_check.py --no-t4       # the GPU as it is (no memory cap)

Without CUDA it stops at once with exit code 2 and says so (nothing is built).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

T4_USABLE_GB = 15.0
NO_CUDA = ("gpu_check needs a CUDA GPU: torch.cuda.is_available() is False on this machine. Run it on a GPU "
           "runtime (e.g. a Colab T4); the CPU-side checks are in tests/train/test_gpu_check.py.")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="training steps (a few dozen; default 30)")
    p.add_argument("--images", type=int, default=6, help="generated drawings in the dataset (default 6)")
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--t4-gb", type=float, default=T4_USABLE_GB, help="memory cap emulating a T4 (GB)")
    p.add_argument("--no-t4", action="store_true", help="no memory cap, the GPU's own precision rules")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.steps < 4:
        p.error("--steps must be at least 4 (the first steps are warm-up)")
    if args.images < 1 or args.resolution % 64:
        p.error("--images must be >= 1 and --resolution a multiple of 64")
    return args


def require_cuda():
    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        raise SystemExit(2)
    return torch


def build_random_sdxl(folder: Path, device: str = "cuda") -> Path:
    """Real SDXL shapes, random fp16 weights made on ``device``, saved as a diffusers folder."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from colabkit.tiny.sdxl import write_tiny_tokenizer
    from colabkit.train.models.load import SDXL_CONFIGS as CONFIGS

    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_tokenizer(folder / "tokenizer", "tokenizer")
    write_tiny_tokenizer(folder / "tokenizer_2", "tokenizer_2")
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        with torch.device(device):
            for sub, make in (("unet", lambda: UNet2DConditionModel.from_config(
                                  json.loads((CONFIGS / "unet" / "config.json").read_text()))),
                              ("vae", lambda: AutoencoderKL.from_config(
                                  json.loads((CONFIGS / "vae" / "config.json").read_text()))),
                              ("text_encoder", lambda: CLIPTextModel(
                                  CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder"))),
                              ("text_encoder_2", lambda: CLIPTextModelWithProjection(
                                  CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder_2")))):
                model = make()
                with torch.no_grad():
                    for p in model.parameters():  # small random weights: fp16 activations stay finite
                        p.normal_(0, 0.02)
                model.save_pretrained(folder / sub)
                del model
                torch.cuda.empty_cache()
    finally:
        torch.set_default_dtype(old)
    EulerDiscreteScheduler.from_pretrained(CONFIGS, subfolder="scheduler").save_pretrained(folder / "scheduler")
    shutil.copyfile(CONFIGS / "model_index.json", folder / "model_index.json")
    return folder


def main(argv=None) -> int:
    args = parse_args(argv)
    torch = require_cuda()
    import os

    work = args.work or Path(tempfile.mkdtemp(prefix="colabkit-gpu-check-"))
    os.environ["COLABKIT_DRIVE_ROOT"] = str(work / "drive")
    os.environ["COLABKIT_CACHE"] = str(work / "cache")
    from colabkit.project import Project
    from colabkit.tiny.drawings import make_image_folder
    from colabkit.train.budget import Budget
    from colabkit.train.config import TrainConfig
    from colabkit.train.loop import Reporter, train
    from colabkit.train.preflight import run_preflight

    name = torch.cuda.get_device_name(0)
    total_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
    if not args.no_t4:
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.t4_gb / total_gb))
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    t0 = time.perf_counter()
    model = build_random_sdxl(work / "model")
    build_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()

    project = Project.at("gpucheck").create()
    make_image_folder(project.dataset, args.images, size=(args.resolution, args.resolution), fmt="png")
    for img in project.dataset.glob("*.png"):
        img.with_suffix(".txt").write_text("houtline, drawing, lines")
    # One epoch ends at the last step: exactly one preview, as an epoch end of a real run makes.
    repeats = max(1, -(-args.steps * 2 // args.images))
    cfg = TrainConfig(project_name="gpucheck", base_model=str(model), resolution=args.resolution,
                      num_repeats=repeats, epochs=1, max_train_steps=args.steps,
                      mixed_precision="fp16" if not args.no_t4 else "auto", sample_every_n_epochs=1,
                      budget_hours=1.0, budget_margin_minutes=0)

    class Clock(Reporter):
        def __init__(self):
            self.marks, self.stages = [], []

        def stage(self, text):
            self.stages.append((time.perf_counter(), text))
            print(text, flush=True)

        def warn(self, text):
            print("warning:", text, flush=True)

        def step(self, step, loss, lr, left):
            self.marks.append(time.perf_counter())

    class Measured(Budget):
        pass

    report = run_preflight(cfg)
    for c in report.checks:
        print(f"  preflight {c.name}: {c.level}: {c.message}")
    plan = report.run_plan
    clock = Clock()
    budget = Measured(start=time.time(), hours=1.0, margin_s=0)
    t_train = time.perf_counter()
    result = train(plan, reporter=clock, budget=budget)
    train_s = time.perf_counter() - t_train
    gaps = [b - a for a, b in zip(clock.marks, clock.marks[1:])][2:]  # warm-up left out
    caching = [t for t, s in clock.stages if s.startswith("Caching")]
    after = [t for t, s in clock.stages if caching and t > caching[0]]
    figures = {
        "gpu": name, "gpu_memory_gb": round(total_gb, 1), "t4_emulated": not args.no_t4,
        "status": result.status, "steps": result.step,
        "s_per_step_median": statistics.median(gaps) if gaps else None,
        "peak_allocated_gb": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gb": torch.cuda.max_memory_reserved() / 2**30,
        "plan_estimate_gb": plan.memory.total_gb if plan.memory else None,
        "plan_parts_gb": plan.memory.parts if plan.memory else None,
        "gradient_checkpointing": plan.gradient_checkpointing,
        "caching_s": (after[0] - caching[0]) if after else None,
        "preview_s": budget.preview_s, "build_weights_s": build_s, "train_call_s": train_s,
    }
    print(json.dumps(figures, indent=2))
    if figures["plan_estimate_gb"]:
        ratio = figures["peak_reserved_gb"] / figures["plan_estimate_gb"]
        print(f"peak reserved / plan estimate = {ratio:.2f} (target: within 10%)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

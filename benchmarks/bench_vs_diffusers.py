"""Side by side: diffusers' own SDXL LoRA example against `colabkit train`, on the same job, alternating.

The job (issue 10): a small SDXL-topology model (UNet block widths 64/128/256, random weights, a diffusers
folder built here), 6 drawings at 256 px, batch 2, LoRA rank 8 (alpha 8), AdamW, fp32, 21 steps, no samples,
on the CPU.

The example is diffusers' ``examples/text_to_image/train_text_to_image_lora_sdxl.py``. It is not part of this
repository and is never copied into it: get a checkout of https://github.com/huggingface/diffusers (the same
version as the diffusers you run it with: the example calls ``check_min_version``; a main-branch example needs
diffusers installed from that checkout, ``pip install -e <checkout>``, in a separate venv) and pass the file:

    python benchmarks/bench_vs_diffusers.py --example /path/to/diffusers/examples/text_to_image/train_text_to_image_lora_sdxl.py
    python benchmarks/bench_vs_diffusers.py --example ... --rounds 3 --busy    # with one core kept busy
    python benchmarks/bench_vs_diffusers.py --example ... --colabkit-targets example   # same LoRA layers

The example needs ``datasets`` and ``torchvision``; run this with a Python that has both and colabkit.

Each round runs the example, then colabkit (the order swaps every round), each in a fresh process with a fresh
output folder and a fresh project (so colabkit's latent cache is built inside its timed run, as on day one).
Two figures per run:

* whole command: wall time from starting the process to its exit (imports, model loading, caching, saving).
* training steps: seconds per optimizer step, from a global ``torch.optim`` step hook installed through a
  ``sitecustomize`` module on the child's PYTHONPATH (the same measurement for both programs): the time from
  the first optimizer step to the last, divided by the steps between them (so the first step's warm-up is
  left out of both).

``--busy`` starts one ``while True: pass`` Python process for the duration of each run (it stops by itself
after ``--busy-limit`` seconds and is killed when the run ends): how each program copes with one core taken.
OMP_NUM_THREADS and friends are removed from the children's environment: both run as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STEPS = 21
RESOLUTION = 256
N_IMAGES = 6
BATCH = 2
RANK = 8
LR = 1e-4
WHERE = ("a checkout of https://github.com/huggingface/diffusers: "
         "examples/text_to_image/train_text_to_image_lora_sdxl.py")

# Installed in the children through PYTHONPATH: a global optimizer-step hook that writes the time of every
# step to $BENCH_STEP_LOG at exit. Chains to any sitecustomize that was already there.
SITECUSTOMIZE = r'''
import atexit, json, os, sys, time
_path = os.environ.get("BENCH_STEP_LOG")
if _path:
    _times, _installed, _threads = [], [], []

    def _audit(event, args):
        # Installed as soon as torch.optim.optimizer has finished importing (checked at each later import).
        if _installed or event != "import":
            return
        mod = sys.modules.get("torch.optim.optimizer")
        if mod is not None and hasattr(mod, "register_optimizer_step_post_hook"):
            _installed.append(True)
            import torch

            def _hook(opt, a, k):
                _times.append(time.perf_counter())
                _threads[:] = [torch.get_num_threads()]  # as the last step ran

            mod.register_optimizer_step_post_hook(_hook)

    sys.addaudithook(_audit)

    def _dump():
        with open(_path, "w") as f:
            json.dump({"times": _times, "torch_threads": _threads[:1]}, f)

    atexit.register(_dump)
'''


def build_model(folder: Path) -> Path:
    """A small SDXL-topology diffusers folder: UNet widths 64/128/256, colabkit's tiny text encoders and VAE."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from colabkit.tiny import sdxl as tiny

    if (folder / "model_index.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    vocab = tiny.write_tiny_tokenizer(folder / "tokenizer", "tokenizer")
    tiny.write_tiny_tokenizer(folder / "tokenizer_2", "tokenizer_2")
    torch.manual_seed(0)
    unet = dict(tiny.UNET_CONFIG, block_out_channels=(64, 128, 256), attention_head_dim=(2, 4, 8), norm_num_groups=32)
    UNet2DConditionModel(**unet).save_pretrained(folder / "unet")
    AutoencoderKL(**tiny.VAE_CONFIG).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(**tiny._text_config(False, vocab))).save_pretrained(folder / "text_encoder")
    CLIPTextModelWithProjection(CLIPTextConfig(**tiny._text_config(True, vocab))).save_pretrained(
        folder / "text_encoder_2")
    EulerDiscreteScheduler.from_pretrained(tiny._CONFIGS, subfolder="scheduler").save_pretrained(folder / "scheduler")
    shutil.copyfile(tiny._CONFIGS / "model_index.json", folder / "model_index.json")
    return folder


CAPTIONS = ["houtline, drawing, circle", "houtline, lines, monochrome", "houtline, drawing, square",
            "houtline, sketch", "houtline, lines, circle", "houtline, drawing, white background"]


def build_images(folder: Path) -> list[Path]:
    from colabkit.tiny.drawings import make_image_folder

    if folder.exists():
        return sorted(folder.glob("drawing_*.png"))
    return make_image_folder(folder, N_IMAGES, size=(RESOLUTION, RESOLUTION), fmt="png")


def example_data(images: list[Path], folder: Path) -> Path:
    """The example's ``--train_data_dir``: an imagefolder with a metadata.jsonl for the captions."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.jsonl", "w") as f:
        for img, cap in zip(images, CAPTIONS):
            shutil.copyfile(img, folder / img.name)
            f.write(json.dumps({"file_name": img.name, "text": cap}) + "\n")
    return folder


def colabkit_project(images: list[Path], drive: Path) -> None:
    """A fresh colabkit project 'bench' under ``drive`` (its own cache, no state)."""
    dataset = drive / "Loras" / "bench" / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    for img, cap in zip(images, CAPTIONS):
        shutil.copyfile(img, dataset / img.name)
        (dataset / img.with_suffix(".txt").name).write_text(cap)


def example_cmd(py: str, example: Path, model: Path, data: Path, out: Path) -> list[str]:
    return [py, str(example), "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(data),
            "--caption_column", "text", "--resolution", str(RESOLUTION), "--train_batch_size", str(BATCH),
            "--rank", str(RANK), "--max_train_steps", str(STEPS), "--learning_rate", str(LR),
            "--mixed_precision", "no", "--output_dir", str(out), "--seed", "0", "--dataloader_num_workers", "0"]


# ``--colabkit-targets example``: colabkit's own command, with its LoRA put on the example's layers
# (to_q/to_k/to_v/to_out.0) instead of sd-scripts' set (which adds feed-forward and proj_in/out: 919 k instead
# of 433 k parameters on this model). A benchmark-only patch, made in the child before the command runs: it
# compares the engines on the same work; the product always trains sd-scripts' set.
EXAMPLE_TARGETS = r"""
import sys
import colabkit.train.lora as lora
_all = lora.unet_targets
lora.unet_targets = lambda unet, lora_type="LoRA": [n for n in _all(unet, lora_type)
                                                    if n.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v")
                                                    or n.endswith("to_out.0")]
from colabkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def colabkit_cmd(py: str, model: Path, extra: list[str], targets: str = "colabkit") -> list[str]:
    launch = ["-c", EXAMPLE_TARGETS] if targets == "example" else ["-m", "colabkit"]
    return [py, *launch, "train", "--project-name", "bench", "--base-model", str(model),
            "--resolution", str(RESOLUTION), "--train-batch-size", str(BATCH), "--network-dim", str(RANK),
            "--network-alpha", str(RANK), "--optimizer", "AdamW", "--unet-lr", str(LR), "--mixed-precision", "no",
            "--max-train-steps", str(STEPS), "--sample-every-n-epochs", "0", "--device", "cpu", *extra]


def child_env(hooks: Path, log: Path, drive: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["BENCH_STEP_LOG"] = str(log)
    env["COLABKIT_DRIVE_ROOT"] = str(drive)
    env["COLABKIT_CACHE"] = str(drive / "cache")
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_DATASETS_OFFLINE"] = "1"
    env["TQDM_DISABLE"] = "1"  # neither program's progress bar is part of the comparison
    return env


def busy_process(limit_s: float) -> subprocess.Popen:
    code = f"import time\nt = time.time()\nwhile time.time() - t < {limit_s}: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def run_one(name: str, cmd: list[str], env: dict[str, str], log: Path, out_log: Path, busy: float) -> dict:
    hog = busy_process(busy) if busy else None
    t0 = time.perf_counter()
    try:
        with open(out_log, "w") as f:
            rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    finally:
        wall = time.perf_counter() - t0
        if hog is not None:
            hog.kill()
            hog.wait()
    if rc != 0:
        sys.exit(f"{name} failed (exit {rc}); its output: {out_log}\n" + out_log.read_text()[-3000:])
    logged = json.loads(log.read_text()) if log.exists() else {"times": [], "torch_threads": []}
    times = logged["times"]
    if len(times) != STEPS:
        sys.exit(f"{name}: {len(times)} optimizer steps seen instead of {STEPS}; see {out_log}")
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {"wall": wall, "step": (times[-1] - times[0]) / (len(times) - 1), "step_median": statistics.median(gaps),
            "threads": logged["torch_threads"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--example", type=Path, required=True, help=f"path to {WHERE}")
    p.add_argument("--rounds", type=int, default=2, help="rounds of (example, colabkit), order alternating")
    p.add_argument("--python", default=sys.executable, help="the Python that runs both (needs datasets, "
                   "torchvision, diffusers new enough for the example, colabkit)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--busy", action="store_true", help="keep one core busy with another process during each run")
    p.add_argument("--busy-limit", type=float, default=600.0, help="the busy process stops by itself after this")
    p.add_argument("--only", choices=("both", "example", "colabkit"), default="both")
    p.add_argument("--example-env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment for the example only, e.g. GOMP_SPINCOUNT=20000 (what colabkit sets for "
                   "itself) to compare the engines with the same OpenMP waiting")
    p.add_argument("--colabkit-targets", choices=("colabkit", "example"), default="colabkit",
                   help="colabkit's LoRA layers: its own (sd-scripts' set, as shipped) or, for an engine-to-engine "
                   "comparison on the same work, the example's to_q/k/v/out only (a patch in the benchmark's child)")
    p.add_argument("--colabkit-args", default="", help="extra `colabkit train` options, e.g. "
                   "'--gradient-checkpointing false'")
    args = p.parse_args(argv)
    if not args.example.is_file():
        p.error(f"{args.example} is not a file. Get {WHERE}.")

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-vs-diffusers-"))
    work.mkdir(parents=True, exist_ok=True)
    hooks = work / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    model = build_model(work / "model")
    images = build_images(work / "images")
    data = example_data(images, work / "example-data")
    extra = args.colabkit_args.split()

    results: dict[str, list[dict]] = {"example": [], "colabkit": []}
    order = ["example", "colabkit"] if args.only == "both" else [args.only]
    for r in range(args.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            run_dir = work / f"r{r}-{name}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir()
            drive = run_dir / "drive"
            if name == "example":
                cmd = example_cmd(args.python, args.example, model, data, run_dir / "out")
            else:
                colabkit_project(images, drive)
                cmd = colabkit_cmd(args.python, model, extra, args.colabkit_targets)
            log = run_dir / "steps.json"
            env = child_env(hooks, log, drive)
            if name == "example":
                env.update(kv.split("=", 1) for kv in args.example_env)
            res = run_one(name, cmd, env, log, run_dir / "output.txt",
                          args.busy_limit if args.busy else 0)
            results[name].append(res)
            print(f"round {r + 1} {name:8s}: whole command {res['wall']:6.1f} s, training steps "
                  f"{res['step']:.3f} s/step (median gap {res['step_median']:.3f}); torch threads {res['threads']}", flush=True)

    def med(name, key):
        return statistics.median(x[key] for x in results[name])

    print(f"\nmedians over {args.rounds} round(s){' with one core kept busy' if args.busy else ''}:")
    print("| | diffusers example | colabkit | colabkit / example |\n|---|---|---|---|")
    for key, label, unit in (("wall", "whole command, wall", "s"), ("step", "training steps only", "s/step")):
        if args.only == "both":
            a, b = med("example", key), med("colabkit", key)
            print(f"| {label} | {a:.3f} {unit} | {b:.3f} {unit} | {b / a:.2f} |")
        else:
            print(f"| {label} | {med(args.only, key):.3f} {unit} ({args.only}) |")
    print(f"(scratch folder: {work})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

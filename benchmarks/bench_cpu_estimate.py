"""The plan's CPU time estimate next to the measured CPU s/step of tiny-sdxl, at a few resolutions (one run).

    OMP_NUM_THREADS=1 python benchmarks/bench_cpu_estimate.py

Prints resolution, measured median s/step (the loop's Reporter.step clock), the estimate, and their ratio; the
constants CPU_GFLOPS / CPU_STEP_OVERHEAD_S in colabkit/train/plan.py come from this.
"""
import os, sys, tempfile, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT / "tests" / "train"))
tmp = Path(tempfile.mkdtemp()); os.environ["COLABKIT_DRIVE_ROOT"] = str(tmp / "MyDrive"); (tmp / "MyDrive").mkdir()
from conftest import draw, tiny_config
from colabkit.project import Project
from colabkit.train.loop import train, Reporter
from colabkit.train.plan import make_plan
p = Project.at("houtline").create()
for i in range(4):
    draw(i, (256, 256)).save(p.dataset / f"d{i}.png"); (p.dataset / f"d{i}.txt").write_text(f"houtline, tag{i}")
class R(Reporter):
    def __init__(self): self.t = []
    def step(self, step, loss, lr, left): self.t.append(time.perf_counter())
for res in (64, 128, 256, 512):
    cfg = tiny_config(resolution=res, start_over=True, num_repeats=3, epochs=1, save_state_every_n_steps=100, unet_lr=1e-4)
    plan = make_plan(cfg, device="cpu"); r = R(); train(plan, reporter=r)
    dt = [b - a for a, b in zip(r.t, r.t[1:])]
    m, e = sorted(dt)[len(dt) // 2], plan.device.cpu_seconds_per_step
    print(f"{res} px: measured {m:.3f} s/step, estimate {e:.3f}, estimate/measured {e / m:.2f}", flush=True)

"""What the training notebook's cells and `colabkit train` call: preflight, train, show the results."""

from __future__ import annotations

from pathlib import Path

from colabkit import display
from colabkit.train.config import TrainConfig
from colabkit.train.loop import TrainResult, lora_name, train
from colabkit.train.plan import RunPlan, make_plan
from colabkit.train.preflight import PreflightReport, run_preflight
from colabkit.i18n import N_, _


def preflight(cfg: TrainConfig | RunPlan, show: bool = True, device: str | None = None) -> PreflightReport:
    report = run_preflight(cfg, device=device)
    if show:
        display.show_table(report.rows(), _("Preflight"))
        if report.ok:
            display.show_text(_("Preflight passed: ready to train."), "ok")
    return report


def train_lora(cfg: TrainConfig, device: str | None = None) -> TrainResult:
    """Plan the run once, refuse it if the preflight found problems, then train (or resume, or say it is
    finished) with that same plan; stop cleanly at the budget."""
    from colabkit.colab import flush_drive_and_say

    plan = make_plan(cfg, device=device)
    preflight(plan, show=False).raise_if_errors()
    with display.quiet_library_notices():
        result = train(plan, reporter=display.NotebookReporter())
    display.show_text(result.message, "ok" if result.status in ("finished", "already finished") else "warn")
    if result.loss_plot:
        display.show_image(result.loss_plot, _("Loss"), width=700)
    if result.status == "stopped":
        # Last: Colab's flush also unmounts Drive, so everything that reads Drive (the plot above) comes first.
        flush_drive_and_say()
    return result


USAGE = N_("""How to use {name} (activation tag: {tag}):
- A1111 / Forge: copy it to models/Lora, then write  <lora:{stem}:0.8>, {tag}  in the prompt.
- ComfyUI: copy it to models/loras and add a "Load LoRA" node after the checkpoint loader; put {tag} in the prompt.
- Civitai: upload it as a LoRA for SDXL 1.0 (the file's metadata carries the base model and tags).
- diffusers: pipe.load_lora_weights("{path}"); then prompt with "{tag}, ...".""")


def show_results(cfg: TrainConfig) -> list[Path]:
    """The finish cell: LoRA files with sizes, the last sample grid, the loss curve, how to use the file."""
    from colabkit.project import open_project
    from colabkit.train import data

    project = open_project(cfg.project_name)
    loras = sorted(project.output.glob(f"{project.slug}*.safetensors"))
    if not loras:
        display.show_text(_("No LoRA files yet: run the training cell first."), "warn")
        return []
    display.show_table([{_("file"): p.name, _("size"): f"{p.stat().st_size / 2**20:.1f} MB"} for p in loras],
                       _("LoRA files in {output}").format(output=project.output))
    grids = sorted(project.samples.glob("grid-*.png"))
    if grids:
        display.show_image(grids[-1], _("Latest samples ({stem})").format(stem=grids[-1].stem), width=900)
    if (project.output / "loss.png").exists():
        display.show_image(project.output / "loss.png", _("Loss"), width=700)
    final = lora_name(project)
    best = final if final.exists() else loras[-1]
    tag = cfg.activation_tag or data.activation_tag_of(data.scan(project.dataset, cfg.resolution).items) or _("(none)")
    display.show_text(_(USAGE).format(name=best.name, stem=best.stem, tag=tag, path=best), "ok")
    return loras

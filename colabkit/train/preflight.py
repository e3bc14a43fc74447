"""Preflight: seconds, no GPU needed, catches the mistakes that would waste a day's GPU time.

It reports on a run plan (``colabkit.train.plan``): the plan makes every decision and notes what it found;
the preflight only turns that into rows. Training then uses the very same plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from colabkit.errors import ColabkitError
from colabkit.i18n import N_, _
from colabkit.train.config import TrainConfig
from colabkit.train.plan import Note, RunPlan, make_plan

Check = Note  # one row: name, level ("ok" | "warn" | "error"), message
# The rows' names are keys in the plan (English), translated where shown.
ROW_NAMES = (N_("activation tag"), N_("base model"), N_("cache"), N_("caption length"), N_("captions"), N_("dataset"),
             N_("downloads"), N_("GPU"), N_("Drive space"), N_("images"), N_("memory"), N_("packages"), N_("prediction"), N_("previews"),
             N_("project"), N_("resolution"), N_("resume"), N_("saved state"), N_("steps"), N_("time"))
LEVELS = {"ok": N_("OK"), "warn": N_("WARNING"), "error": N_("PROBLEM")}


@dataclass
class PreflightReport:
    run_plan: RunPlan

    @property
    def checks(self) -> list[Check]:
        return self.run_plan.notes

    @property
    def plan(self):  # the step plan (StepPlan), or None when the dataset could not be read
        return self.run_plan.steps

    @property
    def resume_step(self) -> int | None:
        return self.run_plan.state.step if self.run_plan.resume == "continue" else None

    @property
    def errors(self) -> list[Check]:
        return self.run_plan.errors

    @property
    def ok(self) -> bool:
        return not self.errors

    def rows(self) -> list[dict]:
        check, details = _("check"), _("details")  # the table's column headings
        return [{check: _(c.name), "": _(LEVELS[c.level]), details: c.message} for c in self.checks]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ColabkitError(_("Preflight found problems; nothing was started:") + "\n- " +
                                "\n- ".join(f"{_(c.name)}: {c.message}" for c in self.errors))


def run_preflight(plan: RunPlan | TrainConfig, device: str | None = None) -> PreflightReport:
    """Report on ``plan`` (a TrainConfig is planned first, with ``device``)."""
    plan = plan if isinstance(plan, RunPlan) else make_plan(plan, device=device)
    _add_time_rows(plan)
    return PreflightReport(plan)


def _add_time_rows(plan: RunPlan) -> None:
    """How long the run will take and what its previews cost (colabkit.train.timing), once per plan."""
    from colabkit.train import timing

    if any(n.name == "time" for n in plan.notes):
        return
    est = timing.plan_estimate(plan)
    if est is None:
        return
    run = plan.run
    hint = timing.cpu_suggestion(est, run.resolution, est.steps)
    plan.note("time", "warn" if hint or est.days > 1 else "ok", est.describe() + (f". {hint}" if hint else ""))
    if est.previews:
        plan.note("previews", "ok", _(
            "{n} epoch-end previews ({steps} sampler steps each), about {each} each, {total} in all; counted in the "
            "daily budget (sample_every_n_epochs 0 turns them off).").format(
            n=est.previews, steps=run.sample_steps, each=timing.span(est.preview_s),
            total=timing.span(est.previews * est.preview_s)))

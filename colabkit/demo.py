"""`colabkit demo`: the whole flow on a local folder with the built-in tiny models, no GPU, no download.

What a newcomer runs first: it creates a project, fills it with a few generated drawings (only if it
is empty), checks and tags them, trains tiny-sdxl for a few dozen steps, and shows where everything is.
"""

from __future__ import annotations

from colabkit import display
from colabkit.i18n import _


def run_demo(project_name: str = "demo", steps: int = 40, resolution: int = 128, start_over: bool = False):
    from colabkit.colab import open_or_create_project
    from colabkit.dataset.pipeline import check_dataset, tag_dataset
    from colabkit.tiny.drawings import make_image_folder
    from colabkit.train.config import TrainConfig
    from colabkit.train.run import show_results, train_lora

    project = open_or_create_project(project_name)
    if not any(project.dataset.iterdir()):
        make_image_folder(project.dataset, 8, size=(640, 640), fmt="mixed")
        display.show_text(_("Wrote {n} sample drawings into {folder}").format(n=8, folder=project.dataset))
    report = check_dataset(project_name, progress=False)
    display.show_text(report.summary())
    tagged = tag_dataset(project_name, tagger_model="tiny-wd14", activation_tag="houtline", progress=False)
    display.show_text(_("Captions: {written} written, {kept} kept.").format(
        written=len(tagged.written), kept=len(tagged.kept) + len(tagged.updated)))
    config = TrainConfig(project_name=project_name, base_model="tiny-sdxl", resolution=resolution, num_repeats=5,
                         train_batch_size=2, max_train_steps=steps, optimizer="AdamW8bit", sample_steps=8,
                         network_dim=8, network_alpha=4, budget_hours=1.0, budget_margin_minutes=0,
                         # short: the tiny tokenizer spells prompts letter by letter into CLIP's 77 tokens
                         sample_prompts="houtline, drawing\nhoutline, white background", start_over=start_over)
    result = train_lora(config)
    if result.status == "already finished":
        # The training message speaks of the notebook's fields; the demo's own options do the same.
        display.show_text(_("The demo's LoRA is already trained ({steps} steps). To train it further: {further}; to "
                            "train it again from scratch: {again} (the earlier files are kept).").format(
            steps=result.step, further=f"python -m colabkit demo --steps {max(steps, result.step) * 2}",
            again="python -m colabkit demo --start-over"))
    show_results(config)
    return result

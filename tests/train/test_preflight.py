"""Preflight: one clear message per mistake (what is wrong, what to do), and never a file deleted or changed.

Every test snapshots the whole stand-in Drive (paths, checksums, mtimes) around the preflight; the ones that
train (marked slow) run a few steps of tiny-sdxl at 64 px on the CPU.
"""

import hashlib
import types

import pytest

from colabkit import doctor
from colabkit.cli import main as cli_main
from colabkit.doctor import GpuInfo
from colabkit.errors import ColabkitError
from colabkit.project import Project
from helpers.single_file import (sdxl_original_shapes, write_header_only, write_sd15_like, write_single_file,
                                 write_truncated)
from colabkit.train import plan as plan_mod
from colabkit.train.loop import train
from colabkit.train.preflight import run_preflight
from colabkit.train.run import preflight, train_lora

T4 = GpuInfo("Tesla T4", 14.75, (7, 5))

def redraw(path):
    """The artist redraws one picture (same size, different content)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(im).rectangle((10, 12, 50, 40), outline=(10, 10, 10), width=3)
    im.save(path)

# -- helpers -----------------------------------------------------------------------------------------

def snapshot(root):
    """Every file and folder under root: (sha256, mtime_ns) for files, 'dir' for folders."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "dir" if p.is_dir() else (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out

def rows(report, name):
    return [c for c in report.checks if c.name == name]

def row(report, name):
    found = rows(report, name)
    assert len(found) == 1, (name, report.checks)
    return found[0]

@pytest.fixture
def no_gpu(monkeypatch):
    """Tests must not depend on the machine they run on (a GPU machine would answer differently)."""
    monkeypatch.setattr(doctor, "gpu_info", lambda: None)

@pytest.fixture
def t4(monkeypatch):
    monkeypatch.setattr(doctor, "gpu_info", lambda: T4)

@pytest.fixture(scope="module")
def tiny_file(tiny_sdxl, tmp_path_factory):
    """tiny-sdxl as an original-layout single file: an SDXL that is not the literal name 'tiny-sdxl'."""
    return write_single_file(tiny_sdxl, tmp_path_factory.mktemp("sf") / "my-sdxl.safetensors")

@pytest.fixture(scope="module")
def sdxl_sized_shapes():
    return sdxl_original_shapes()

@pytest.fixture
def sdxl_sized_file(tmp_path, sdxl_sized_shapes, monkeypatch):
    """A checkpoint of real SDXL size (6.9 GB of shapes in its header, the tensor bytes a sparse hole). The tests
    run offline, where SDXL's tokenizer vocabulary (fetched once) is not at hand: that check is tested apart."""
    monkeypatch.setattr(plan_mod, "_check_hub_files", lambda plan: None)
    return write_header_only(tmp_path / "big" / "my-big-sdxl.safetensors", sdxl_sized_shapes)

@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """A preflight must never download: any attempt fails the test. The local model cache is empty."""
    from colabkit.train.models import download as dl

    def refuse(*a, **k):
        raise AssertionError("preflight tried to download")

    monkeypatch.setattr(dl, "download", refuse)
    monkeypatch.setenv("COLABKIT_CACHE", str(tmp_path / "local-cache"))

# -- a good project ----------------------------------------------------------------------------------

def test_a_good_project_passes_and_changes_nothing(tiny_project, make_config, drive, no_gpu):
    before = snapshot(drive)
    report = run_preflight(make_config(num_repeats=100))  # 4 x 100 / 2 x 2 = 400 steps
    assert report.ok, report.checks
    assert report.checks[0].name == "GPU" and report.checks[0].level == "warn"  # tiny-sdxl runs on the CPU
    assert "tiny-sdxl" in report.checks[0].message
    assert row(report, "dataset").message == "4 captioned images; activation tag 'houtline' in 4 of them"
    assert row(report, "steps").level == "ok" and "= 400 steps" in row(report, "steps").message
    assert row(report, "base model").level == "ok"
    assert report.plan.total_steps == 400 and report.resume_step is None
    assert not rows(report, "resume") and not rows(report, "cache")  # nothing cached or saved yet
    assert snapshot(drive) == before

# -- the mistakes ------------------------------------------------------------------------------------

def test_empty_dataset(drive, make_config, no_gpu):
    Project.at("houtline").create()
    before = snapshot(drive)
    report = run_preflight(make_config())
    check = row(report, "dataset")
    assert check.level == "error" and not report.ok
    assert "No images in" in check.message and "Upload your drawings" in check.message
    assert "dataset notebook" in check.message
    with pytest.raises(ColabkitError, match="nothing was started"):
        report.raise_if_errors()
    assert snapshot(drive) == before

def test_images_without_any_caption(tiny_project, make_config, drive, no_gpu):
    for p in tiny_project.dataset.glob("*.txt"):
        p.unlink()
    before = snapshot(drive)
    report = run_preflight(make_config())
    assert row(report, "dataset").level == "error"
    assert "4 images but none has a caption" in row(report, "dataset").message
    assert "tagging step" in row(report, "dataset").message
    assert snapshot(drive) == before

def test_counts_missing_captions_orphans_and_the_activation_tag(tiny_project, make_config, drive, no_gpu):
    ds = tiny_project.dataset
    (ds / "d3.txt").unlink()  # an image without a caption
    (ds / "gone.txt").write_text("houtline, deleted drawing")  # a caption without an image
    (ds / "d2.txt").write_text("outline, wide")  # a caption without the activation tag
    before = snapshot(drive)
    report = run_preflight(make_config())
    assert report.ok  # all warnings: training can go on with the 3 captioned images
    assert row(report, "dataset").message == "3 captioned images; activation tag 'houtline' in 2 of them"
    missing, orphans = rows(report, "captions")
    assert missing.level == orphans.level == "warn"
    assert missing.message.startswith("1 images have no .txt caption and will be skipped: d3.png")
    assert "Tag them in the dataset notebook" in missing.message
    assert orphans.message == "1 caption files have no image: gone.txt"
    tag = row(report, "activation tag")
    assert tag.level == "warn" and "'houtline' is missing from 1 captions" in tag.message
    assert "trigger-word step" in tag.message
    assert snapshot(drive) == before

def test_wrong_project_name_lists_the_projects_that_exist(tiny_project, make_config, drive, no_gpu):
    Project.at("clients/inks").create()
    before = snapshot(drive)
    report = run_preflight(make_config(project_name="houtlin"))
    check = row(report, "project")
    assert check.level == "error" and not report.ok
    assert "No project 'houtlin'" in check.message
    assert "Projects found: houtline, clients/inks." in check.message  # sub-folder projects too
    assert "Check the spelling of project_name" in check.message
    assert report.checks[-1] is check  # nothing else is checked against a project that is not there
    assert snapshot(drive) == before
    assert not (drive / "Loras" / "houtlin").exists()  # and no empty project was created

def test_sd15_checkpoint_is_refused_by_name(tiny_project, make_config, drive, t4):
    sd15 = write_sd15_like(drive / "models" / "v1-5-pruned-emaonly.safetensors")
    before = snapshot(drive)
    report = run_preflight(make_config(base_model=str(sd15)))
    check = row(report, "base model")
    assert check.level == "error" and not report.ok
    assert "v1-5-pruned-emaonly.safetensors is a Stable Diffusion 1.x checkpoint" in check.message
    assert "SDXL-family models only" in check.message and "Pick an SDXL-family checkpoint" in check.message
    assert not rows(report, "cache")  # no cache to talk about for a model that cannot be used
    assert snapshot(drive) == before  # the wrong file is left where it is

def test_truncated_checkpoint_says_download_again(tiny_project, make_config, drive, tiny_file, t4):
    cut = write_truncated(tiny_file, drive / "models" / "half-downloaded.safetensors", 0.6)
    before = snapshot(drive)
    report = run_preflight(make_config(base_model=str(cut)))
    check = row(report, "base model")
    assert check.level == "error" and not report.ok
    assert "cut short" in check.message and "download it again" in check.message
    assert snapshot(drive) == before  # the partial file is not deleted behind the user's back

def test_a_good_single_file_sdxl_resolves(tiny_project, make_config, drive, tiny_file, t4):
    report = run_preflight(make_config(base_model=str(tiny_file)))
    assert row(report, "base model").level == "ok" and "my-sdxl.safetensors (path)" in row(report, "base model").message
    assert row(report, "GPU").level == "ok" and "Tesla T4, 14.8 GB, fp16 (no native bf16)" == row(report, "GPU").message
    assert row(report, "resolution").level == "warn" and "64 px is low for SDXL" in row(report, "resolution").message
    assert report.ok

def test_drive_full(tiny_project, make_config, drive, monkeypatch, no_gpu):
    free = {"gb": 0.2}
    fake_shutil = types.SimpleNamespace(disk_usage=lambda path: types.SimpleNamespace(
        total=15 * 2**30, used=int((15 - free["gb"]) * 2**30), free=int(free["gb"] * 2**30)))
    monkeypatch.setattr(plan_mod, "shutil", fake_shutil)  # only what preflight sees
    before = snapshot(drive)
    report = run_preflight(make_config())
    check = row(report, "Drive space")
    assert check.level == "error" and not report.ok
    assert check.message.startswith("0.21 GB free on Drive, the run needs about 0.51 GB (model 0.00 GB, states 0.01")
    assert "Free some space (empty Drive's bin too: it counts)" in check.message
    free["gb"] = 3.0
    assert row(run_preflight(make_config()), "Drive space").level == "ok"
    assert snapshot(drive) == before

def test_drive_full_for_a_model_still_to_download(tiny_project, make_config, drive, monkeypatch, t4, no_download):
    fake_shutil = types.SimpleNamespace(disk_usage=lambda path: types.SimpleNamespace(free=3 * 2**30))
    monkeypatch.setattr(plan_mod, "shutil", fake_shutil)
    before = snapshot(drive)
    report = run_preflight(make_config(base_model="SDXL base 1.0", resolution=1024))
    assert row(report, "base model").level == "ok"  # the preset resolves without downloading
    check = row(report, "Drive space")
    assert check.level == "error" and "3.22 GB free on Drive, the run needs about 7.86 GB (model 6.94 GB" in check.message
    assert "untick keep_model_on_drive" in check.message
    report = run_preflight(make_config(base_model="SDXL base 1.0", resolution=1024, keep_model_on_drive=False))
    assert row(report, "Drive space").level == "ok"
    assert snapshot(drive) == before

def test_a_link_not_downloaded_yet_is_checked_without_downloading(tiny_project, make_config, drive, t4,
                                                                  no_download):
    # No sha256 is known for a plain link before its download: preflight must not try to fingerprint the
    # file that is not there yet (it used to crash with FileNotFoundError here).
    before = snapshot(drive)
    report = run_preflight(make_config(base_model="https://civitai.com/api/download/models/290640"))
    check = row(report, "base model")
    assert check.level == "ok" and "(download)" in check.message
    assert not rows(report, "cache")
    assert row(report, "Drive space").level == "ok"
    assert snapshot(drive) == before

@pytest.mark.parametrize("colab", [True, False])
def test_no_gpu_is_said_plainly_before_anything_else(tiny_project, make_config, drive, monkeypatch, no_gpu,
                                                     no_download, sdxl_sized_file, colab):
    monkeypatch.setattr("colabkit.project.in_colab", lambda: colab)
    before = snapshot(drive)
    for base in ("SDXL base 1.0", str(sdxl_sized_file)):  # a preset still to download, a file already there
        report = run_preflight(make_config(base_model=base, resolution=1024))
        gpu = report.checks[0]
        assert gpu.name == "GPU" and gpu.level == "error" and not report.ok
        if colab:
            assert "Runtime > Change runtime type > T4 GPU" in gpu.message
            assert "run the notebook again from the top" in gpu.message
        else:
            assert "Runtime >" not in gpu.message
            assert gpu.message.startswith("No CUDA GPU found.") and "tiny-sdxl model runs on the CPU" in gpu.message
        assert " s a step on this CPU" in gpu.message and "2,567.5M UNet parameters at 1024 px" in gpu.message
        assert len(report.errors) == 1  # the rest of the setup is fine: one message, the one to act on
    assert snapshot(drive) == before
    assert not (drive / "Loras" / "_models").exists()  # nothing downloaded to Drive

def test_no_gpu_refuses_by_time_not_by_name(tiny_project, make_config, tiny_sdxl, tmp_path, no_gpu, no_download,
                                            sdxl_sized_file, monkeypatch):
    import shutil

    monkeypatch.setattr(doctor, "_meminfo", lambda: (11.0, 12.7))  # a free Colab CPU runtime's RAM
    assert row(run_preflight(make_config()), "GPU").level == "warn"  # tiny-sdxl trains on the CPU
    # A small SDXL-topology folder with another name, given by path: small, so the CPU is fine.
    mine = shutil.copytree(tiny_sdxl, tmp_path / "my-small-sdxl")
    check = row(run_preflight(make_config(base_model=str(mine))), "GPU")
    assert check.level == "warn" and "No GPU: my-small-sdxl is small enough to train on the CPU" in check.message
    # Real SDXL size: refused, with how long it would take; device cpu takes it anyway, the estimate a warning.
    big = make_config(base_model=str(sdxl_sized_file), resolution=1024)
    check = row(run_preflight(big), "GPU")
    assert check.level == "error" and "would take about" in check.message and "device cpu forces it" in check.message
    forced = run_preflight(big, device="cpu")
    check = row(forced, "GPU")
    assert check.level == "warn" and check.message.startswith("On the CPU, as asked: about ")
    assert forced.ok, forced.checks
    assert forced.run_plan.device.device == "cpu" and forced.run_plan.device.cpu_seconds_per_step > 60
    assert forced.run_plan.facts.params["unet"] == 2_567_463_684  # counted in the header, not assumed
    assert row(forced, "memory").level == "warn" and "RAM" in row(forced, "memory").message

def test_offline_without_the_files_a_run_fetches_once(tiny_project, make_config, sdxl_sized_shapes, tmp_path,
                                                      monkeypatch, t4):
    monkeypatch.setenv("COLABKIT_OFFLINE", "1")
    big = write_header_only(tmp_path / "my-big-sdxl.safetensors", sdxl_sized_shapes)
    check = row(run_preflight(make_config(base_model=str(big), resolution=1024, vae_fp16_fix=True)), "downloads")
    assert check.level == "error" and "offline" in check.message
    assert "SDXL's tokenizer vocabulary" in check.message and "fp16-fix VAE" in check.message
    assert not rows(run_preflight(make_config()), "downloads")  # tiny-sdxl brings its own tokenizers
    preset = row(run_preflight(make_config(base_model="SDXL base 1.0", resolution=1024)), "downloads")
    assert preset.level == "error" and "the base model SDXL base 1.0" in preset.message
    assert "'tiny-sdxl'" in preset.message  # the way to try the flow offline, named where it fails

def test_settings_too_big_for_the_gpu(tiny_project, make_config, drive, sdxl_sized_file, t4):
    before = snapshot(drive)
    big = make_config(base_model=str(sdxl_sized_file), resolution=1024, train_batch_size=8,
                      gradient_checkpointing=False)
    report = run_preflight(big)
    check = row(report, "memory")
    assert check.level == "error" and not report.ok
    needed = float(check.message.split("about ", 1)[1].split(" GB", 1)[0])
    assert needed > 14.75 and "GB needed, the GPU has 14.8 GB." in check.message
    assert "Turn on gradient_checkpointing: about" in check.message
    assert "ower train_batch_size to" in check.message and "gradient_accumulation_steps" in check.message
    # The recommended setup fits a T4.
    fits = run_preflight(make_config(base_model=str(sdxl_sized_file), resolution=1024, train_batch_size=1,
                                     optimizer="AdamW8bit"))
    assert row(fits, "memory").level == "ok" and "of 14.8 GB GPU memory" in row(fits, "memory").message
    # gradient_checkpointing auto: on because the run would not fit without it, and the preflight says so.
    assert fits.run_plan.gradient_checkpointing
    assert "gradient checkpointing on: without it about" in row(fits, "memory").message
    # The same settings on the small tiny model fit without it: auto leaves it off (faster).
    small = run_preflight(make_config(resolution=1024, train_batch_size=1))
    assert not small.run_plan.gradient_checkpointing and "fits without it" in row(small, "memory").message
    assert snapshot(drive) == before

@pytest.mark.parametrize("repeats, words", [(2, "8 steps is fewer than the usual 300-500: num_repeats = 100 gives 400"),
                                            (200, "800 steps is more than the usual 300-500: num_repeats = 100 gives")])
def test_step_maths_outside_300_500_suggests_num_repeats(tiny_project, make_config, no_gpu, repeats, words):
    report = run_preflight(make_config(num_repeats=repeats))
    check = row(report, "steps")
    assert check.level == "warn" and report.ok  # a warning: the user may mean it
    assert f"4 images x {repeats} repeats / batch 2" in check.message
    assert words in check.message
    assert not report.plan.in_range

def test_step_maths_without_a_possible_repeat_count(tiny_project, make_config, no_gpu):
    report = run_preflight(make_config(epochs=200, train_batch_size=1))  # >= 800 steps even at 1 repeat
    check = row(report, "steps")
    assert check.level == "warn" and "no num_repeats reaches it" in check.message
    assert "change epochs or batch size" in check.message

# -- what training leaves behind -----------------------------------------------------------------------

@pytest.mark.slow
def test_resume_state_is_announced(stopped_project, make_config, drive, no_gpu):
    cfg = make_config(epochs=3)
    before = snapshot(drive)
    report = preflight(cfg, show=False)
    assert report.ok and report.resume_step == 2
    assert row(report, "resume").level == "ok"
    assert row(report, "resume").message == "Will continue from step 2/12."
    assert row(report, "cache").message == "all latents cached from an earlier day"
    assert snapshot(drive) == before

@pytest.mark.slow
def test_changed_settings_after_a_stopped_run(stopped_project, make_config, drive, no_gpu):
    cfg = make_config(epochs=3)
    before = snapshot(drive)
    changed = cfg.replace(network_dim=8, lr_scheduler="constant")
    report = run_preflight(changed)
    check = row(report, "resume")
    assert check.level == "error" and not report.ok and report.resume_step is None
    assert "network_dim: 4 then, 8 now" in check.message
    assert "lr_scheduler: 'cosine' then, 'constant' now" in check.message
    assert "Put the old settings back to continue, or tick start_over (old files are kept)" in check.message
    with pytest.raises(ColabkitError, match="Preflight found problems; nothing was started") as e:
        train_lora(changed, device="cpu")
    assert "network_dim: 4 then, 8 now" in str(e.value)
    assert snapshot(drive) == before  # refused: not one file touched
    # start_over: the resume check steps aside (the state will be moved, not deleted, by training).
    assert not rows(run_preflight(changed.replace(start_over=True)), "resume")
    assert snapshot(drive) == before

@pytest.mark.slow
def test_changed_image_recaches_only_that_image(tiny_project, make_config, drive, no_gpu, monkeypatch,
                                                tmp_path):
    cfg = make_config(epochs=1)
    assert train(cfg, device="cpu").status == "finished"
    latents = tiny_project.cache / "latents"
    cached = snapshot(latents)
    assert len(cached) == 4
    report = run_preflight(cfg)
    assert row(report, "cache").message == "all latents cached from an earlier day"
    assert row(report, "resume").message == "This run is finished (4 steps). Raise epochs to train more."

    # Latents kept off Drive (cache_to_drive False) are looked for where the loop keeps them: none there yet.
    from colabkit.train.models import cache_dir

    with monkeypatch.context() as m:
        m.setenv("COLABKIT_CACHE", str(cache_dir()))  # tiny-sdxl stays where it is
        m.setenv("HOME", str(tmp_path / "home"))
        report = run_preflight(cfg.replace(cache_to_drive=False))
    assert not rows(report, "cache") and not (tmp_path / "home").exists()

    redraw(tiny_project.dataset / "d1.png")
    new_sha = hashlib.sha256((tiny_project.dataset / "d1.png").read_bytes()).hexdigest()
    before = snapshot(drive)
    report = run_preflight(cfg)
    check = row(report, "resume")
    assert check.level == "error" and "the dataset (images or captions) changed" in check.message and "start_over" in check.message
    report = run_preflight(cfg.replace(start_over=True))
    assert report.ok
    assert row(report, "cache").message == "1 of 4 latents new or changed: only those will be re-cached."
    with pytest.raises(ColabkitError, match=r"the dataset \(images or captions\) changed"):
        train_lora(cfg, device="cpu")
    assert snapshot(drive) == before

    result = train_lora(cfg.replace(start_over=True), device="cpu")
    assert result.status == "finished"
    after = snapshot(latents)
    assert {k: v for k, v in after.items() if k in cached} == cached  # the other three untouched, same mtime
    new = sorted(set(after) - set(cached))
    assert len(new) == 1 and new[0].startswith(new_sha[:24]), new  # exactly the changed one was encoded
    assert any(p.name.startswith("state-old-") for p in tiny_project.training.iterdir())  # old state kept

# -- the CLI ------------------------------------------------------------------------------------------

def test_cli_preflight(tiny_project, drive, capsys):
    before = snapshot(drive)
    assert cli_main(["preflight", "--project-name", "houtline", "--base-model", "tiny-sdxl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Preflight\n")
    assert "check" in out.splitlines()[1] and "details" in out.splitlines()[1]
    assert "4 captioned images" in out and "Preflight passed: ready to train." in out

    Project.at("inks").create()
    assert cli_main(["preflight", "--project-name", "houtlin", "--base-model", "tiny-sdxl"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out and "Projects found: houtline, inks." in out and "Preflight passed" not in out

    assert cli_main(["preflight", "--project-name", "inks", "--base-model", "tiny-sdxl"]) == 1  # empty dataset
    assert "No images in" in capsys.readouterr().out

    assert cli_main(["preflight", "--project-name", "my drawings", "--base-model", "tiny-sdxl"]) == 2
    assert "is not allowed" in capsys.readouterr().err
    assert {k: v for k, v in snapshot(drive).items() if not k.startswith("Loras/inks")} == before

"""The run's own LoRA names: what it writes, prunes and archives, and what it must leave alone."""

from colabkit.project import Project
from colabkit.train.outputs import epoch_loras, is_run_lora, lora_name, run_loras


def test_only_the_runs_own_names_count(drive):
    project = Project.at("houtline").create()
    names = ["houtline.safetensors", "houtline-01.safetensors", "houtline-02.safetensors", "houtline-100.safetensors",
             "houtline-v1.safetensors", "houtline-12-final.safetensors", "houtlinex-01.safetensors", "other.safetensors",
             "houtline-03.json"]
    for n in names:
        (project.output / n).write_bytes(b"x")
    assert [p.name for p in epoch_loras(project)] == [
        "houtline-01.safetensors", "houtline-02.safetensors", "houtline-100.safetensors"]  # by epoch, not by name
    assert [p.name for p in run_loras(project)] == [
        "houtline-01.safetensors", "houtline-02.safetensors", "houtline-100.safetensors", "houtline.safetensors"]
    assert not is_run_lora(project.output / "houtline-v1.safetensors", project)
    assert is_run_lora(lora_name(project, 7), project) and lora_name(project, 7).name == "houtline-07.safetensors"
    assert not is_run_lora(project.root / "houtline.safetensors", project)  # same name, another folder

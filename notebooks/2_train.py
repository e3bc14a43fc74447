# %% [markdown]
# # colabkit 2: train your LoRA
#
# Run the cells from top to bottom (▶ on each, or *Runtime > Run all*). You need a **T4 GPU**:
# *Runtime > Change runtime type > T4 GPU*. Your images and captions come from the dataset notebook
# (`MyDrive/Loras/<project>/dataset/`); the LoRA appears in `MyDrive/Loras/<project>/output/`.
#
# Colab does not publish its free GPU limits: its FAQ says they vary, and runtimes are often cut after 2-3 hours.
# Set `budget_hours` to the time you expect to get (3 is a common start). Training stops by itself before it runs
# out, saves everything to Drive, and **continues exactly where it stopped** when you run this notebook again
# another day, without changing anything.

# %%
# @title Step 0: set up (installs what Colab lacks, mounts Drive) { display-mode: "form" }
colabkit_source = ""  # @param {type:"string"}
# @markdown Needed once per fresh runtime: where to install colabkit from. Empty: the newest `colabkit-*.whl` in
# @markdown `MyDrive/Loras/_colabkit/` (unzip the colabkit download there). Or a git URL (`git+https://...`), a release on
# @markdown the package index (`colabkit==0.1.0`), or a wheel on Drive (`/content/drive/MyDrive/colabkit-0.1.0-py3-none-any.whl`,
# @markdown made in a colabkit checkout with `pip wheel --no-deps .` or `python -m build`).
language = "English"  # @param ["English", "Español"]
# @markdown The language of the notebook's messages.
import glob, importlib, importlib.util, os, re, subprocess, sys
if importlib.util.find_spec("colabkit") is None:  # a fresh runtime
    # MyDrive (COLABKIT_DRIVE_ROOT: a local stand-in; COLABKIT_COLAB_CONTENT: the tests' stand-in Colab).
    drive_root = os.environ.get("COLABKIT_DRIVE_ROOT") or (os.environ.get("COLABKIT_COLAB_CONTENT") or "/content") + "/drive/MyDrive"
    if "COLABKIT_DRIVE_ROOT" not in os.environ and importlib.util.find_spec("google") and importlib.util.find_spec("google.colab"):
        from google.colab import drive; drive.mount(drive_root[:-len("/MyDrive")])  # pip reads Drive only once it is mounted
    # The download's wheels in MyDrive/Loras/_colabkit/, newest last. A typed wheel or release wins; empty or a
    # repository URL (git+...): the download's newest wheel comes first.
    wheels = sorted(glob.glob(drive_root + "/Loras/_colabkit/colabkit-*.whl"),
                    key=lambda p: [int(n) for n in re.findall(r"\d+", os.path.basename(p).split("-")[1])])
    source = colabkit_source.strip() if colabkit_source.strip()[:4] not in ("", "git+") or not wheels else wheels[-1]
    # --no-deps: colabkit alone; Colab's own torch, diffusers, transformers are never replaced (the doctor checks them).
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-color",
                          "--disable-pip-version-check", source], capture_output=True, text=True) if source else None
    if pip is None or pip.returncode:  # pip's (or git's) error line says why; the rest is not for the user
        why = ([ln.strip() for ln in pip.stderr.splitlines() if ln.strip().startswith(("ERROR", "fatal"))]
               or ["pip failed"])[-1] if pip else "colabkit_source is empty and MyDrive/Loras/_colabkit/ has no colabkit-*.whl"
        raise SystemExit(f"colabkit is not installed ({why}). Unzip the colabkit download into MyDrive/Loras/_colabkit/, or put "
                         "in colabkit_source a git URL (git+https://...), a package index release (colabkit==0.1.0) or a wheel on "
                         "Drive (/content/drive/MyDrive/colabkit-0.1.0-py3-none-any.whl, made with `pip wheel --no-deps .` in a "
                         "colabkit checkout), then run this cell again.")
    importlib.invalidate_caches()
from colabkit.colab import setup
setup_report = setup(extras=["train", "notebook"], need_gpu=True, language=language)

# %% [markdown]
# ## Step 1: choose your settings
#
# **The step maths.** One *epoch* shows every image `num_repeats` times; a *step* trains on
# `train_batch_size` images at once. Steps = images x repeats / batch x epochs. For 10-100 drawings,
# **300-500 steps** is the usual target: the check below does the maths and suggests repeats that land there.
# Sub-folders of `dataset/` named `<repeats>_<name>` (kohya's convention, e.g. `10_style/`, `2_props/`) repeat their
# images their own number of times; the check shows each folder's images x repeats and the total.
#
# @settings TrainConfig: num_repeats, epochs, train_batch_size, optimizer, network_dim, network_alpha, lora_type, shuffle_tags, keep_tokens, budget_hours, start_over

# %%
# @title Step 1: settings and preflight check { display-mode: "form" }
project_name = "my-first-lora"  # @param {type:"string"}
base_model = "SDXL base 1.0"  # @param ["SDXL base 1.0", "Pony Diffusion V6 XL", "Animagine XL 3.1", "Illustrious XL 0.1", "NoobAI-XL V-Pred 1.0", "NoobAI-XL Eps 1.1", "tiny-sdxl"] {allow-input: true}
# @settings TrainConfig: base_model
keep_model_on_drive = True  # @param {type:"boolean"}
# @settings TrainConfig: keep_model_on_drive
prediction_type = "auto"  # @param ["auto", "epsilon", "v_prediction"]
# @settings TrainConfig: prediction_type
zero_terminal_snr = "auto"  # @param ["auto", "on", "off"]
# @settings TrainConfig: zero_terminal_snr
resolution = 1024  # @param {type:"integer"}
num_repeats = 10  # @param {type:"integer"}
epochs = 10  # @param {type:"integer"}
train_batch_size = 2  # @param {type:"integer"}
optimizer = "AdamW8bit"  # @param ["AdamW8bit", "Prodigy", "AdamW", "Adafactor"]
recommended_values = True  # @param {type:"boolean"}
unet_lr = 1e-4  # @param {type:"number"}
text_encoder_lr = 0.0  # @param {type:"number"}
# @settings TrainConfig: text_encoder_lr
lr_scheduler = "cosine"  # @param ["constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear"]
network_dim = 16  # @param {type:"integer"}
network_alpha = 8  # @param {type:"integer"}
lora_type = "LoRA"  # @param ["LoRA", "LoCon"]
continue_from_lora = ""  # @param {type:"string"}
# @markdown A LoRA `.safetensors` to start from (e.g. last month's, from colabkit, kohya or diffusers): a new run that
# @markdown continues it with your new drawings; its rank, alpha and type are used. A Drive path or a file name in
# @markdown `output/` (rename your earlier `<project>.safetensors` first, e.g. `<project>-v1`). Empty: a fresh LoRA.
# @markdown Its text-encoder parts are continued only when `text_encoder_lr` is above 0 (else left out, and said).
shuffle_tags = True  # @param {type:"boolean"}
keep_tokens = 1  # @param {type:"integer"}
flip_aug = False  # @param {type:"boolean"}
max_token_length = 225  # @param [75, 150, 225]
# @settings TrainConfig: max_token_length
gradient_checkpointing = "auto"  # @param ["auto", "on", "off"]
# @settings TrainConfig: gradient_checkpointing
# @markdown Saving and previews
save_every_n_epochs = 1  # @param {type:"integer"}
keep_only_last_n_epochs = 10  # @param {type:"integer"}
sample_prompts = ""  # @param {type:"string"}
# @settings TrainConfig: sample_prompts
sample_every_n_epochs = 1  # @param {type:"integer"}
# @markdown Free-tier budget
budget_hours = 3.0  # @param {type:"number"}
start_over = False  # @param {type:"boolean"}

from colabkit.train.config import TrainConfig
from colabkit.train.run import preflight

config = TrainConfig(
    project_name=project_name, base_model=base_model, keep_model_on_drive=keep_model_on_drive,
    prediction_type=prediction_type, zero_terminal_snr=zero_terminal_snr, resolution=resolution,
    num_repeats=num_repeats, epochs=epochs, train_batch_size=train_batch_size, optimizer=optimizer, recommended_values=recommended_values,
    unet_lr=unet_lr, text_encoder_lr=text_encoder_lr, lr_scheduler=lr_scheduler, network_dim=network_dim,
    network_alpha=network_alpha, lora_type=lora_type, shuffle_tags=shuffle_tags, keep_tokens=keep_tokens,
    flip_aug=flip_aug, max_token_length=max_token_length, gradient_checkpointing=gradient_checkpointing,
    save_every_n_epochs=save_every_n_epochs, keep_only_last_n_epochs=keep_only_last_n_epochs,
    sample_prompts=sample_prompts, sample_every_n_epochs=sample_every_n_epochs, budget_hours=budget_hours,
    start_over=start_over, continue_from_lora=continue_from_lora)
preflight_report = preflight(config)

# %% [markdown]
# ## Step 2: train
# One progress bar shows steps, loss, speed and the budget left. After each epoch you see sample images
# (same prompts, same seed: watch your style appear) and the loss curve. If the budget runs out, the run
# stops with everything saved: **run the notebook again tomorrow** and it continues where it stopped.

# %%
# @title Step 2: train (or continue) { display-mode: "form" }
from colabkit.train.run import train_lora

result = train_lora(config)

# %%
# @title Step 3: your LoRA files and how to use them { display-mode: "form" }
from colabkit.train.run import show_results

lora_files = show_results(config)

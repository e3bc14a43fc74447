# %% [markdown]
# # colabkit 1: prepare your dataset
#
# Upload 10-100 of your drawings into **`MyDrive/Loras/<project>/dataset/`** on Google Drive, then run
# the cells from top to bottom (▶ on each, or *Runtime > Run all*). This notebook runs on a **CPU runtime**
# (the one it opens with): keep your GPU time for training. Only for BLIP photo captions on many images is a GPU
# worth it (*Runtime > Change runtime type > T4 GPU*).
#
# What happens: your images are checked (nothing is changed or deleted), every usable image gets a
# caption file (`drawing.png` → `drawing.txt`) that starts with your **trigger word**, and you see a
# table of the tags and a gallery, so you know what the model will learn. Then open the training notebook.

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
setup_report = setup(extras=["tag", "notebook"], language=language)

# %% [markdown]
# ## Step 1: your project
# Pick a short name (letters, digits, `-`, `_`). This mounts your Drive (Colab asks for permission once)
# and creates `MyDrive/Loras/<project_name>/dataset/`. Put your drawings there, then continue.

# %%
# @title Step 1: open or create the project { display-mode: "form" }
project_name = "my-first-lora"  # @param {type:"string"}
from colabkit.colab import open_or_create_project

project = open_or_create_project(project_name)

# %% [markdown]
# ## Step 2: check the images
# Every file in `dataset/` is read. Usable images are listed with their size and colour mode
# (transparent backgrounds are put on **white**, CMYK / 16-bit / palette images become normal RGB, phone
# photos are turned upright). Each problem file is named with what is wrong and what to do.
# Your files are never changed; tick `move_rejected` to move problem files into `dataset/_rejected/`
# (nothing is ever deleted).
#
# Sub-folders named `<repeats>_<name>` (kohya's convention, e.g. `dataset/10_style/`, `dataset/2_props/`) are used
# too: each of their images trains `<repeats>` times an epoch (images directly in `dataset/` use `num_repeats`).
# The check lists each folder; other sub-folders are not used, and it says so.

# %%
# @title Step 2: check and clean the images { display-mode: "form" }
move_rejected = False  # @param {type:"boolean"}
min_side = 512  # @param {type:"integer"}
max_aspect = 4.0  # @param {type:"number"}
# @settings CheckConfig: min_side, max_aspect
# @markdown Tagging and training use exactly the images this step accepts.
from colabkit.dataset.config import CheckConfig
from colabkit.dataset.pipeline import check_dataset
from colabkit.display_dataset import show_check_report

check_config = CheckConfig(project_name=project_name, move_rejected=move_rejected, min_side=min_side,
                           max_aspect=max_aspect)
dataset_report = check_dataset(check_config)
show_check_report(dataset_report)

# %% [markdown]
# ## Step 3: tag (or caption) every image
# - **anime tags** (drawings, anime, illustration): a WD14 tagger lists what it sees (`1girl, long hair, ...`).
#   `tag_threshold`: lower gives more tags (0.35 is a good start); `character_threshold`: how sure it must be
#   to name a known character (above 1 switches character tags off, usually right for a style LoRA).
# - **photo captions** (photos, realistic work): BLIP writes one sentence per image.
#
# **activation_tag** is your trigger word: a made-up word such as `houtline` that you will type in prompts.
# It is put first in every caption. **blacklist_tags** (comma-separated, `*` allowed) are never written:
# tags describing your style itself (e.g. `monochrome, lineart`) are better left out so the trigger word learns them.
# Existing caption files are kept (only given the trigger word) unless you tick `overwrite_captions`.

# %%
# @title Step 3: tag images { display-mode: "form" }
tagging_method = "anime tags"  # @param ["anime tags", "photo captions"]
tagger_model = "wd-eva02-large-tagger-v3"  # @param ["wd-eva02-large-tagger-v3", "wd-vit-large-tagger-v3", "wd-vit-tagger-v3", "wd-swinv2-tagger-v3", "tiny-wd14"] {allow-input: true}
tag_threshold = 0.35  # @param {type:"slider", min:0.05, max:1, step:0.05}
character_threshold = 0.85  # @param {type:"slider", min:0.05, max:1.05, step:0.05}
include_ratings = False  # @param {type:"boolean"}
caption_model = "Salesforce/blip-image-captioning-large"  # @param ["Salesforce/blip-image-captioning-large", "Salesforce/blip-image-captioning-base", "tiny-blip"] {allow-input: true}
caption_min_length = 5  # @param {type:"integer"}
caption_max_length = 40  # @param {type:"integer"}
caption_beams = 3  # @param {type:"integer"}
activation_tag = "houtline"  # @param {type:"string"}
blacklist_tags = ""  # @param {type:"string"}
overwrite_captions = False  # @param {type:"boolean"}
batch_size = 8  # @param {type:"integer"}
# @settings TagConfig: tagger_model, caption_model
from colabkit.dataset.config import TagConfig
from colabkit.dataset.pipeline import tag_dataset
from colabkit.display_dataset import show_tag_report

tag_config = TagConfig(
    project_name=project_name, tagging_method=tagging_method, tagger_model=tagger_model, tag_threshold=tag_threshold,
    character_threshold=character_threshold, include_ratings=include_ratings, caption_model=caption_model,
    caption_min_length=caption_min_length, caption_max_length=caption_max_length, caption_beams=caption_beams,
    activation_tag=activation_tag, blacklist_tags=blacklist_tags, overwrite_captions=overwrite_captions,
    batch_size=batch_size)
tag_report = tag_dataset(tag_config)
show_tag_report(tag_report)

# %% [markdown]
# ## Step 4: trigger word and curation
# Applies to **all** captions, including ones you wrote yourself: the trigger word (from Step 3) first and
# only once, blacklisted tags removed, duplicates removed.
# @settings CurateConfig: replace_tags, global_tags

# %%
# @title Step 4: trigger word and curation { display-mode: "form" }
replace_tags = ""  # @param {type:"string"}
global_tags = ""  # @param {type:"string"}
# @markdown The trigger word and blacklist are Step 3's `activation_tag` and `blacklist_tags`.
from colabkit.dataset.config import CurateConfig
from colabkit.dataset.pipeline import curate_captions
from colabkit.display_dataset import show_curate_report

curate_config = CurateConfig(project_name=project_name, activation_tag=activation_tag, blacklist_tags=blacklist_tags,
                             replace_tags=replace_tags, global_tags=global_tags)
curate_report = curate_captions(curate_config)
show_curate_report(curate_report)

# %% [markdown]
# ## Step 5: what the model will learn
# The most frequent tags, and your images with their captions. A tag on almost every image that
# describes your style (e.g. `monochrome`) is worth blacklisting in Step 3, so the trigger word carries it.

# %%
# @title Step 5: tag frequencies and gallery { display-mode: "form" }
gallery_size = 12  # @param {type:"integer"}
from colabkit.display_dataset import show_overview

show_overview(project_name, top=50, gallery=gallery_size, activation_tag=activation_tag)

# %%
# @title Optional: fix captions by hand { display-mode: "form" }
open_editor = False  # @param {type:"boolean"}
# @markdown Tick and run: pick an image, edit its caption, press *Save caption*.
from colabkit.display_dataset import show_caption_editor

if open_editor:
    editor = show_caption_editor(project_name, activation_tag=activation_tag)

# %% [markdown]
# ## Next
# Your dataset is ready. Open **2_train** and use the same `project_name`. It runs in a runtime of its own, so
# release this one: an idle runtime still uses your Colab quota.

# %%
# @title Done: release this runtime { display-mode: "form" }
release_runtime = False  # @param {type:"boolean"}
# @markdown Tick and run to disconnect now (same as *Runtime > Disconnect and delete runtime*); your files stay on Drive.
from colabkit.colab import release_runtime as release

released = release(release_runtime)

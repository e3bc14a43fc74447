# %% [markdown]
# # colabkit 3: pick the best epoch, generate, cut out game assets
#
# Run the cells from top to bottom (▶ on each). Steps 1 and 2 need a **T4 GPU** (*Runtime > Change runtime
# type > T4 GPU*); step 3 (cut out) runs without one, on any pictures. Everything is written to
# `MyDrive/Loras/<project>/output/`: the comparison grid to `compare/`, your pictures to `generated/`
# (each PNG keeps its prompt and settings, readable by A1111's *PNG Info* and Civitai), and the cut-out
# sprites with their atlas to `assets/`. Your pictures are never changed: results are new files.

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
setup_report = setup(extras=["tag", "notebook"], need_gpu=True, language=language)

# %% [markdown]
# ## Step 1: pick the best epoch
# Training saved one LoRA file per epoch. This draws the same prompt with the same seed for each file
# (rows) at a few LoRA weights (columns). Pick the **file** whose pictures look most like your drawings
# and the **weight** where they still look clean: an overtrained file repeats your drawings or breaks
# apart; an undertrained one looks like the base model. About 15 s per picture on a T4 at 1024 px.
#
# @settings CompareConfig: base_model, lora_files, prompt

# %%
# @title Step 1: compare epochs and weights { display-mode: "form" }
project_name = "my-first-lora"  # @param {type:"string"}
base_model = "SDXL base 1.0"  # @param ["SDXL base 1.0", "Pony Diffusion V6 XL", "Animagine XL 3.1", "Illustrious XL 0.1", "NoobAI-XL V-Pred 1.0", "NoobAI-XL Eps 1.1", "tiny-sdxl"] {allow-input: true}
prediction_type = "auto"  # @param ["auto", "epsilon", "v_prediction"]
lora_files = ""  # @param {type:"string"}
lora_weights = "0.6, 0.8, 1.0"  # @param {type:"string"}
prompt = ""  # @param {type:"string"}
seed = 1234  # @param {type:"integer"}
steps = 20  # @param {type:"integer"}
size = "1024x1024"  # @param ["1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "1344x768", "768x1344"] {allow-input: true}

from colabkit.assets.compare import compare_epochs
from colabkit.assets.config import CompareConfig

compare_grid = compare_epochs(CompareConfig(
    project_name=project_name, base_model=base_model, prediction_type=prediction_type, lora_files=lora_files,
    lora_weights=lora_weights, prompt=prompt, seed=seed, steps=steps, size=size))

# %% [markdown]
# ## Step 2: generate
# Pictures go to `output/generated/` as `00000-<seed>.png`, `00001-<seed+1>.png`, ... and are shown as a grid.
# For sprites, keep *white background, simple background* in the prompt (step 3 needs a plain background);
# for a tileable texture, tick **seamless**.
#
# @settings GenerateConfig: lora_file, lora_scale, seed, sampler

# %%
# @title Step 2: generate pictures { display-mode: "form" }
lora_file = ""  # @param {type:"string"}
lora_scale = 0.8  # @param {type:"number"}
prompt = ""  # @param {type:"string"}
negative_prompt = "lowres, bad anatomy, worst quality, low quality, jpeg artifacts, watermark, text, signature, blurry"  # @param {type:"string"}
seed = -1  # @param {type:"integer"}
steps = 25  # @param {type:"integer"}
guidance_scale = 7.0  # @param {type:"number"}
size = "1024x1024"  # @param ["1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "1344x768", "768x1344"] {allow-input: true}
num_images = 4  # @param {type:"integer"}
sampler = "DPM++ 2M Karras"  # @param ["DPM++ 2M Karras", "DPM++ 2M SDE Karras", "Euler a", "Euler"]
seamless = False  # @param {type:"boolean"}

from colabkit.assets.config import GenerateConfig
from colabkit.assets.generate import generate_images

pictures = generate_images(GenerateConfig(
    project_name=project_name, base_model=base_model, prediction_type=prediction_type, lora_file=lora_file,
    lora_scale=lora_scale, prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=steps,
    guidance_scale=guidance_scale, size=size, num_images=num_images, sampler=sampler, seamless=seamless))

# %% [markdown]
# ## Step 3: cut out sprites
# For pictures on a light background (plain, shaded or vignetted): the background becomes transparent (only
# where it touches the picture's border), each separate object becomes its own PNG, and all of them are packed
# into **one atlas for the folder** (`<folder>.png` + `.json`, TexturePacker's JSON-hash layout that Phaser and
# PixiJS load; more pages when they do not fit, plus `<folder>.multiatlas.json` for Phaser). Each sprite has a
# pivot (the middle of its bottom by default) and its place in its source picture. Results:
# `output/assets/<picture>/`; the preview numbers each sprite and each enclosed region (**hole 1**, ...).
# Sizes are in pixels of a 1024 px picture: a 2048 px picture is cut the same way.
#
# @settings CutoutConfig: input_folder, shadows, close_gaps, holes, tolerance, gap, min_area, canvas, canvas_height, names, pixel_art, palette_colors, model_file

# %%
# @title Step 3: cut out sprites and pack an atlas { display-mode: "form" }
input_folder = ""  # @param {type:"string"}
shadows = "soft"  # @param ["soft", "remove", "keep"]
close_gaps = 0  # @param {type:"integer"}
holes = "keep"  # @param {type:"string"}
tolerance = 24  # @param {type:"integer"}
gap = 8  # @param {type:"integer"}
min_area = 64  # @param {type:"integer"}
canvas = "own"  # @param ["own", "cell", "height"]
canvas_height = 256  # @param {type:"integer"}
names = ""  # @param {type:"string"}
pivot = "0.5, 1"  # @param {type:"string"}
power_of_two = False  # @param {type:"boolean"}
palette_colors = 0  # @param {type:"integer"}
pixel_art = False  # @param {type:"boolean"}
model_file = ""  # @param {type:"string"}

from colabkit.assets.config import CutoutConfig
from colabkit.assets.cutout import cut_out_images

asset_folders = cut_out_images(CutoutConfig(
    project_name=project_name, input_folder=input_folder, shadows=shadows, close_gaps=close_gaps, holes=holes,
    tolerance=tolerance, gap=gap, min_area=min_area, canvas=canvas, canvas_height=canvas_height, names=names,
    pivot=pivot, power_of_two=power_of_two, palette_colors=palette_colors, pixel_art=pixel_art,
    model_file=model_file))

# %% [markdown]
# ## Done
# Your pictures and sprites are on Drive. Release this runtime when you are finished: an idle GPU runtime spends
# the same daily quota that training needs.

# %%
# @title Done: release this runtime { display-mode: "form" }
release_runtime = False  # @param {type:"boolean"}
# @markdown Tick and run to disconnect now (same as *Runtime > Disconnect and delete runtime*); your files stay on Drive.
from colabkit.colab import release_runtime as release

released = release(release_runtime)

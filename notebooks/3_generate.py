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
# @markdown Needed once per fresh runtime: where to install colabkit from. A git URL (`git+https://...`), a release on
# @markdown the package index (`colabkit==0.1.0`), or a wheel on Drive (`/content/drive/MyDrive/colabkit-0.1.0-py3-none-any.whl`,
# @markdown made in a colabkit checkout with `pip wheel --no-deps .` or `python -m build`).
import importlib, importlib.util, subprocess, sys
if importlib.util.find_spec("colabkit") is None:  # a fresh runtime
    if "/drive/MyDrive/" in colabkit_source:  # a wheel on Drive: pip can read it only once Drive is mounted
        from google.colab import drive; drive.mount(colabkit_source.split("/MyDrive/")[0])
    # --no-deps: colabkit alone; Colab's own torch, diffusers, transformers are never replaced (the doctor checks them).
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-color",
                          "--disable-pip-version-check", colabkit_source.strip()], capture_output=True, text=True) if colabkit_source.strip() else None
    if pip is None or pip.returncode:  # pip's (or git's) error line says why; the rest is not for the user
        why = ([ln.strip() for ln in pip.stderr.splitlines() if ln.strip().startswith(("ERROR", "fatal"))]
               or ["pip failed"])[-1] if pip else "colabkit_source is empty"
        raise SystemExit(f"colabkit is not installed ({why}). Put in colabkit_source a git URL (git+https://...), a "
                         "package index release (colabkit==0.1.0) or a wheel on Drive (/content/drive/MyDrive/colabkit-"
                         "0.1.0-py3-none-any.whl, made with `pip wheel --no-deps .` in a colabkit checkout), then run this cell again.")
    importlib.invalidate_caches()
from colabkit.colab import setup
setup_report = setup(extras=["tag", "notebook"], need_gpu=True)

# %% [markdown]
# ## Step 1: pick the best epoch
# Training saved one LoRA file per epoch. This draws the same prompt with the same seed for each file
# (rows) at a few LoRA weights (columns). Pick the **file** whose pictures look most like your drawings
# and the **weight** where they still look clean: an overtrained file repeats your drawings or breaks
# apart; an undertrained one looks like the base model. About 15 s per picture on a T4 at 1024 px.
#
# - **base_model**: the model you trained on (downloaded then, found again on Drive), or any other SDXL.
# - **lora_files**: names from `output/`, separated by commas; empty compares them all.
# - **prompt**: one per line; empty uses your activation tag plus your dataset's most frequent tags.

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
# - **lora_file**: the file you picked in step 1 (empty: the final one; `none`: no LoRA). **lora_scale**: its weight.
# - **seed**: -1 picks a new one each run; every picture keeps its seed, so a good one can be made again.
# - **sampler**: *DPM++ 2M Karras* is sharp in 20-30 steps; *Euler a* is softer and more varied.

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
# - **shadows**: *soft* keeps drop shadows as see-through black; *remove* drops them; *keep* leaves them opaque.
# - **close_gaps**: if a white body behind a broken outline disappears, set 8-12.
# - **holes**: enclosed background-coloured regions: *keep*, *clear*, or the numbers from the preview (`1, 3`).
# - **tolerance**: raise it if specks of background stay; lower it if pale parts of a sprite vanish.
# - **gap**: parts closer than this are one sprite. **min_area**: smaller specks are dropped.
# - **canvas**: *own* size per sprite; *cell*: one cell size for the set, on one baseline; *height*: all scaled
#   to **canvas_height** first. **names**: names for the sprites in order, e.g. `sword, shield, potion`.
# - **pixel_art**: finds the size of the generated "pixels", shrinks every sprite to one pixel per block and gives
#   the set one palette (`palette.png`, `palette.hex`) of **palette_colors** colours (16 when 0).
# - **palette_colors**: without pixel_art, reduces each sprite to this many colours; 0 keeps every colour.
# - **model_file**: optional, an `.onnx` background-removal model on Drive for busy backgrounds: BiRefNet
#   (MIT) or isnet-anime (Apache-2.0). Not BRIA RMBG: its licence forbids commercial use.

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

#!/usr/bin/env bash
# GPU check (issue 10): random real-shape SDXL on the GPU, a T4 emulated (15 GB, fp16, no TF32), the default
# recipe through colabkit's training path for a few dozen steps. Prints s/step, peak VRAM next to the plan's
# estimate, caching and preview times. Must finish within 8 minutes; stops cleanly (exit 2) without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 480 python benchmarks/gpu_check.py "$@"

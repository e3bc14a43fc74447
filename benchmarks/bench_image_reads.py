"""How often each image file is opened from the dataset check to the start of training, in one runtime.

On Drive every open is a download, so this is the count that matters for a 100-image dataset. Runs the
real ``check_dataset`` and then ``train.data.scan`` twice (preflight, then the training loop), counting
``open`` audit events on the image files. Run it on an older commit too to compare:

    PYTHONPATH=$PWD python benchmarks/bench_image_reads.py [--images 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp()) / "MyDrive"
    root.mkdir()
    os.environ["COLABKIT_DRIVE_ROOT"] = str(root)
    from colabkit.dataset.pipeline import check_dataset
    from colabkit.project import Project
    from colabkit.tiny.drawings import make_image_folder
    from colabkit.train import data

    project = Project.at("bench").create()
    for path in make_image_folder(project.dataset, args.images, size=(640, 640), fmt="mixed"):
        path.with_suffix(".txt").write_text("houtline, drawing")
    opens: Counter[str] = Counter()

    def hook(event, hook_args):
        name = hook_args[0] if event == "open" else None
        if isinstance(name, (str, os.PathLike)) and str(name).endswith((".png", ".jpg")):
            opens[Path(name).name] += 1

    sys.addaudithook(hook)  # cannot be removed: keep this script a process of its own
    check_dataset("bench", progress=False)
    after_check = sum(opens.values())
    for _ in range(2):
        data.scan(project.dataset, 1024)
    total = sum(opens.values())
    print(f"{args.images} images: {after_check / args.images:.1f} opens per image by the check step, "
          f"{total / args.images:.1f} after the check and two training scans (preflight, training loop)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

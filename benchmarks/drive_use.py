"""Drive bytes used and trashed per day by a run at the notebook's defaults, before and after colabkit truncated what
it deletes (and saved less often at short epoch ends), from colabkit.train.drive_space on SDXL's real sizes.

    python benchmarks/drive_use.py [--days 3] [--hours 3] [--epochs 10]

Assumptions (printed): the epochs spread evenly over the days; one state every save_state_every_minutes, one at each
epoch's end (after the change: when the last save is half an interval old, about half of them at epochs longer
than the interval), one at each day's budget stop; previews at every epoch of 2 prompts at 1024 px (upper bound
of 6 MB a picture, what the preflight counts); the base model kept on Drive (sd_xl_base_1.0, 6.94 GB).
"""

from __future__ import annotations

import argparse

from colabkit.train import drive_space as ds

SDXL_CHECKPOINT = 6_938_078_334


def per_day(optimizer: str, days: int, hours: float, epochs: int, minutes: float, dim: int, after: bool):
    params = ds.lora_params(dim)
    state, lora = ds.state_bytes(params, optimizer), ds.lora_file_bytes(params)
    preview = 2 * 2 * 3 * 1024 ** 2  # 2 prompts: each picture and the grid
    rows, saves, done, trash = [], 0, 0, 0
    for day in range(1, days + 1):
        ends = epochs * day // days - done
        done += ends
        day_saves = int(hours * 60 // minutes) + (ends // 2 if after else ends) + 1
        saves += day_saves
        if not after:
            trash = ds.trash_bytes(params=params, optimizer=optimizer, saves=saves)
        files = min(done, epochs - 1) + (1 if done == epochs else 0)
        live = SDXL_CHECKPOINT + min(saves, ds.KEEP_STATES) * state + files * lora + done * preview + ds.LOSS_PLOT
        rows.append((day, day_saves, live, trash))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--hours", type=float, default=3.0, help="GPU hours a day (budget_hours)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=10.0, help="save_state_every_minutes")
    ap.add_argument("--dim", type=int, default=16, help="network_dim")
    a = ap.parse_args()
    params = ds.lora_params(a.dim)
    print(f"SDXL LoRA dim {a.dim}: {params:,} parameters; LoRA file {ds.gb(ds.lora_file_bytes(params))}")
    for opt in ("AdamW8bit", "Prodigy"):
        print(f"\n{opt}: one state {ds.gb(ds.state_bytes(params, opt))}. {a.days} days x {a.hours:g} h, "
              f"{a.epochs} epochs, a save every {a.minutes:g} min")
        print(f"{'day':>3} | {'saves':>5} {'on Drive':>9} {'in trash':>9} {'total':>9} | {'saves':>5} "
              f"{'on Drive':>9} {'in trash':>9} {'total':>9} | after/before")
        print(f"{'':>3} | {'before':^35} | {'after':^35} |")
        for b, n in zip(per_day(opt, a.days, a.hours, a.epochs, a.minutes, a.dim, False),
                        per_day(opt, a.days, a.hours, a.epochs, a.minutes, a.dim, True)):
            print(f"{b[0]:>3} | {b[1]:>5} {ds.gb(b[2]):>9} {ds.gb(b[3]):>9} {ds.gb(b[2] + b[3]):>9} | {n[1]:>5} "
                  f"{ds.gb(n[2]):>9} {ds.gb(n[3]):>9} {ds.gb(n[2] + n[3]):>9} | {(n[2] + n[3]) / (b[2] + b[3]):.2f}")


if __name__ == "__main__":
    main()

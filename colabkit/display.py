"""Notebook and terminal presentation: reports, progress, pictures. No logic lives here.

In a notebook, pictures are shown inline (sample grids, loss curve); in a terminal they are
named by path. tqdm.auto picks the widget bar in notebooks and the text bar elsewhere.
"""

from __future__ import annotations

import contextlib
import html
import logging
import warnings
from pathlib import Path

from colabkit.i18n import _


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ != "TerminalInteractiveShell"


def show_text(text: str, kind: str = "info") -> None:
    if in_notebook():
        from IPython.display import HTML, display

        colour = {"info": "#1f4e79", "ok": "#2e7d32", "warn": "#b26a00", "error": "#b00020"}[kind]
        display(HTML(f'<pre style="white-space:pre-wrap;color:{colour}">{html.escape(text)}</pre>'))
    else:
        print(text)


# Inline pictures are previews: the notebook (autosaved to Drive by Colab) must stay small however many
# epochs run, while the full-size files stay on Drive. A 3072x1024 sample grid is ~7 MB as PNG; as a
# 1024-px JPEG it is ~0.1 MB.
PREVIEW_MAX_SIDE = 1024
PREVIEW_MAX_BYTES = 256 * 1024


def preview_bytes(path: Path, max_side: int = PREVIEW_MAX_SIDE, max_bytes: int = PREVIEW_MAX_BYTES) -> tuple[bytes, str]:
    """(image bytes, 'png' or 'jpeg') to embed for ``path``: the file itself when small, else a downscaled JPEG."""
    from PIL import Image

    path = Path(path)
    data = path.read_bytes()
    with Image.open(path) as im:
        fmt = (im.format or "").lower()
        if fmt in ("png", "jpeg") and max(im.size) <= max_side and len(data) <= max_bytes:
            return data, fmt
        im = im.convert("RGBA") if im.mode in ("P", "LA", "PA") else im
        if im.mode == "RGBA":  # JPEG has no alpha: previews go on white, like the training images
            flat = Image.new("RGB", im.size, "white")
            flat.paste(im, mask=im.getchannel("A"))
            im = flat
        im = im.convert("RGB")
        scale = min(1.0, max_side / max(im.size))
        if scale < 1.0:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.Resampling.LANCZOS)
        import io

        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85, optimize=True)
        return buf.getvalue(), "jpeg"


def show_image(path: Path, title: str | None = None, width: int | None = None) -> None:
    """A picture inline (a light preview; the full-size file stays where it is), or its path in a terminal."""
    if in_notebook():
        from IPython.display import Image, display

        data, fmt = preview_bytes(path)
        if title:
            show_text(title)
        display(Image(data=data, format=fmt, width=width))
    else:
        print(f"{title + ': ' if title else ''}{path}")


def show_table(rows: list[dict], title: str | None = None) -> None:
    if not rows:
        return
    cols = list(rows[0])
    if in_notebook():
        from IPython.display import HTML, display

        head = "".join(f"<th style='text-align:left'>{html.escape(str(c))}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(r.get(c, '')))}</td>"
                                        for c in cols) + "</tr>" for r in rows)
        caption = f"<b>{html.escape(title)}</b>" if title else ""
        display(HTML(f"{caption}<table>{'<tr>' + head + '</tr>'}{body}</table>"))
    else:
        widths = {c: max(len(str(c)), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
        if title:
            print(title)
        print("  ".join(str(c).ljust(widths[c]) for c in cols))
        for r in rows:
            print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


def error_lines(error: BaseException) -> list[str]:
    """How a ColabkitError reads in a notebook: its message alone, in red (ANSI, as Jupyter shows tracebacks)."""
    return [f"\x1b[1;31m{line}\x1b[0m" for line in (str(error) or type(error).__name__).splitlines()]


def install_error_display(shell=None) -> bool:
    """In IPython/Jupyter/Colab: show a ColabkitError as its message alone, without the traceback.

    A ColabkitError is an answer (what is wrong and the fix), not a crash: ~20 lines of frames around
    it hide the one useful line. The cell still fails (so "Run all" stops there); every other
    exception keeps IPython's usual traceback. Returns False outside IPython. Idempotent.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False
    from colabkit.errors import ColabkitError

    def handler(shell, etype, value, tb, tb_offset=None):
        # IPython ignores what a custom handler returns: the handler shows the error itself. Through
        # _showtraceback (what IPython's own tracebacks use), the kernel sends a normal "error" output
        # whose traceback is just the message, and the execute reply still says the cell failed.
        shell._showtraceback(etype, value, error_lines(value))

    shell.set_custom_exc((ColabkitError,), handler)
    return True


# Library notices that mean nothing to an artist, where our calls trigger them: (logger, text in the message).
LIBRARY_NOISE = (
    # bitsandbytes on a CPU with AVX512-bf16, at import: an optional 4-bit kernel we never use (8-bit AdamW only).
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward"),
    # diffusers on vae.to(float32): "modules that should be kept in float32: []", i.e. none; the VAE is fp32 anyway.
    ("diffusers.models.modeling_utils", "that should be kept in float32: []"),
    # transformers' image processors fall back to their PIL versions, which is what we want (no torchvision).
    ("transformers.utils.import_utils", "requires torchvision (not installed)"),
)


class _DropMessages(logging.Filter):
    def __init__(self, texts: tuple[str, ...]):
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(t in message for t in self.texts)


@contextlib.contextmanager
def quiet_library_notices():
    """Drop LIBRARY_NOISE (those messages only, on those loggers) while the block runs; everything else shows."""
    added = []
    for name in {n for n, _text in LIBRARY_NOISE}:
        f = _DropMessages(tuple(t for n, t in LIBRARY_NOISE if n == name))
        logging.getLogger(name).addFilter(f)
        added.append((name, f))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torchvision.*", module=r"transformers\..*")
            yield
    finally:
        for name, f in added:
            logging.getLogger(name).removeFilter(f)


def show_report(report) -> None:
    show_text(str(report), "ok" if report.ok else "warn")


def show_project(project) -> None:
    show_text(_("Project '{name}'\n  put your drawings in: {dataset}\n  LoRA files will appear in: {output}").format(
        name=project.name, dataset=project.dataset, output=project.output), "ok")


class NotebookReporter:
    """A training Reporter: one progress bar for the whole run, pictures at each epoch end."""

    def __init__(self):
        self.bar = None
        self.skips = 0

    def stage(self, text: str) -> None:
        show_text(text)

    def warn(self, text: str) -> None:
        show_text(text, "warn")

    def progress(self, iterable, desc: str, total: int | None = None):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=False)

    def start(self, start_step: int, total_steps: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_steps, initial=start_step, desc=_("training"), unit=_("step"), dynamic_ncols=True)

    def step(self, step: int, loss: float, lr: float, budget_left_s: float) -> None:
        from colabkit.train.budget import hms

        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            shown = dict(loss=f"{loss:.4f}", lr=f"{lr:.2e}", budget_left=hms(budget_left_s))
            if self.skips:  # steps skipped for a NaN/inf loss or gradient (the fp16 grad scaler skips a few early)
                shown["skipped"] = self.skips
            self.bar.set_postfix(**shown, refresh=False)

    def skipped(self, step: int, count: int) -> None:
        self.skips = count

    def epoch_end(self, epoch: int, lora_path, grid, loss_plot) -> None:
        if lora_path:
            show_text(_("epoch {epoch}: saved {file}").format(epoch=epoch, file=Path(lora_path).name), "ok")
        if grid:
            show_image(grid, _("epoch {epoch} samples").format(epoch=epoch), width=900)
        if loss_plot:
            show_image(loss_plot, width=700)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""Presentation for the dataset notebook: report tables, tag frequencies, a captioned gallery, an editor.

The ``*_html`` functions return HTML strings (testable, and readable in any Jupyter front end,
Colab included); the ``show_*`` functions display them. Data comes from ``colabkit.dataset.pipeline``.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from colabkit.dataset.captions import split_tags, tag_key
from colabkit.i18n import _, ngettext

_STATUS_COLOURS = {"ok": "#1b7f3b", "warning": "#a06000", "rejected": "#b00020", "moved to _rejected/": "#b00020"}
_TABLE = "border-collapse:collapse;font-size:13px;margin:4px 0"
_CELL = "border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top"


def _esc(x) -> str:
    return html.escape(str(x))


def _display(html_text: str) -> None:
    from IPython.display import HTML, display

    display(HTML(html_text))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Rows are already-escaped HTML cells."""
    head = "".join(f'<th style="{_CELL};background:#f3f3f3">{_esc(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in r) + "</tr>" for r in rows)
    return f'<table style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _warnings(warnings: list[str]) -> str:
    return "".join(f'<p style="color:#a06000;margin:2px 0">&#9888; {_esc(w)}</p>' for w in warnings)


# --- step 1 ------------------------------------------------------------------------------------


def check_report_html(report) -> str:
    """The check step's one table: every file with its status, size, mode, what was found and the fix."""
    rows = []
    for r in report.rows():
        colour = _STATUS_COLOURS.get(r["status"], "#000")
        rows.append(
            [
                _esc(r["file"]),
                f'<b style="color:{colour}">{_esc(_(r["status"]))}</b>',
                _esc(r["size"]),
                _esc(r["mode"]),
                _esc(r["details"]),
                _esc(r["fix"]),
            ]
        )
    return (
        f"<h4 style='margin:4px 0'>{_esc(report.summary())}</h4>"
        + _warnings(report.warnings)
        + _table([_("file"), _("status"), _("size"), _("mode"), _("details"), _("what to do")], rows)
    )


def show_check_report(report) -> None:
    _display(check_report_html(report))


# --- step 2 ------------------------------------------------------------------------------------


def tag_report_html(report, show: int = 8) -> str:
    parts = [f"<h4 style='margin:4px 0'>{_esc(report.summary())}</h4>", _warnings(report.warnings)]
    if report.failed:
        parts.append(_table([_("file"), _("problem"), _("what to do")],
                            [[_esc(p.file.name), _esc(p.reason), _esc(p.fix)] for p in report.failed]))
    if report.skipped:
        names = ", ".join(p.file.name for p in report.skipped)
        parts.append(f"<p style='margin:2px 0'>{_esc(_('Not tagged (see Step 2, the image check): {names}').format(names=names))}</p>")
    sample = list(report.captions.items())[:show]
    if sample:
        parts.append(_table([_("image"), _("caption")], [[_esc(k), _esc(v)] for k, v in sample]))
    return "".join(parts)


def show_tag_report(report) -> None:
    _display(tag_report_html(report))


# --- step 3 ------------------------------------------------------------------------------------


def frequencies_html(frequencies: list[tuple[str, int]], top: int = 50, total: int | None = None) -> str:
    """Tag frequency table with bars: what the model will learn most."""
    rows = frequencies[:top]
    if not rows:
        return f"<p>{_esc(_('No captions yet.'))}</p>"
    most = rows[0][1]
    total = total or most
    cells = []
    for tag, n in rows:
        width = int(160 * n / most)
        bar = f'<div style="background:#6b8fd6;height:10px;width:{width}px"></div>'
        cells.append([_esc(tag), f"{n} / {total}", bar])
    heading = _esc(_("Top {n} tags").format(n=len(rows)))
    return f"<h4 style='margin:4px 0'>{heading}</h4>" + _table([_("tag"), _("images"), ""], cells)


def curate_report_html(report, top: int = 50) -> str:
    total = len(report.changed) + len(report.unchanged)
    return (
        f"<h4 style='margin:4px 0'>{_esc(report.summary())}</h4>"
        + _warnings(report.warnings)
        + frequencies_html(report.frequencies, top, total)
    )


def show_curate_report(report, top: int = 50) -> None:
    _display(curate_report_html(report, top))


def _thumbnail_data_uri(path: Path, size: int) -> str:
    from colabkit.dataset.images import load_rgb

    img = load_rgb(path, long_side=size)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def gallery_html(items: list[tuple[Path, str]], n: int = 12, thumb: int = 192, trigger: str = "") -> str:
    """A grid of thumbnails with their captions (the trigger word in bold)."""
    cards = []
    for path, caption in items[:n]:
        tags = [
            f"<b>{_esc(t)}</b>" if trigger and tag_key(t) == tag_key(trigger) else _esc(t) for t in split_tags(caption)
        ]
        try:
            src = _thumbnail_data_uri(path, thumb)
            img = f'<img src="{src}" style="max-width:{thumb}px;max-height:{thumb}px;display:block;margin:auto">'
        except Exception as e:  # a file that broke since the check: show the caption anyway
            img = f"<div style='height:{thumb}px'>{_esc(_('cannot show: {error}').format(error=e))}</div>"
        cards.append(
            f'<div style="width:{thumb}px;margin:4px;font-size:11px;word-wrap:break-word">{img}'
            f'<div style="color:#555">{_esc(path.name)}</div><div>{", ".join(tags)}</div></div>'
        )
    more = f"<p>{_esc(_('... and {n} more.').format(n=len(items) - n))}</p>" if len(items) > n else ""
    return '<div style="display:flex;flex-wrap:wrap">' + "".join(cards) + "</div>" + more


def overview_html(project_name: str, top: int = 50, gallery: int = 12, activation_tag: str = "") -> str:
    """Frequency table plus gallery for a project: what training will see."""
    from colabkit.dataset.captions import count_tags
    from colabkit.dataset.pipeline import captioned_images

    items = captioned_images(project_name)
    freqs = count_tags(split_tags(c) for _path, c in items)
    heading = _esc(ngettext("{n} captioned image", "{n} captioned images", len(items)).format(n=len(items)))
    return (frequencies_html(freqs, top, len(items)) + f"<h4 style='margin:4px 0'>{heading}</h4>"
            + gallery_html(items, gallery, trigger=activation_tag))


def show_overview(project_name: str, top: int = 50, gallery: int = 12, activation_tag: str = "") -> None:
    _display(overview_html(project_name, top, gallery, activation_tag))


# --- optional editor ---------------------------------------------------------------------------


class CaptionEditor:
    """Pick an image, edit its caption, save (atomically; trigger kept first). ``widget`` is the UI.

    Uses only what ipywidgets 7.7 and 8 share (Dropdown, HTML, Textarea, Button, HBox/VBox, Layout with
    width/height, ``observe``, ``on_click``); nothing from 8 alone (``Tab.titles``, ``description_allow_html``,
    the tuple-shaped ``FileUpload.value``). Display goes through ``_ipython_display_``, which both honour:
    7 has no ``_repr_mimebundle_``.
    """

    def __init__(self, project_name: str, activation_tag: str = "", thumb: int = 320):
        import ipywidgets as w

        from colabkit.dataset.pipeline import captioned_images

        self.project_name = project_name
        self.activation_tag = activation_tag
        self.thumb = thumb
        self.captions = {p.name: (p, c) for p, c in captioned_images(project_name)}
        names = list(self.captions)
        self.dropdown = w.Dropdown(options=names, description=_("image"), layout=w.Layout(width="420px"))
        self.image = w.HTML()
        self.text = w.Textarea(layout=w.Layout(width="100%", height="90px"))
        self.save_button = w.Button(description=_("Save caption"), button_style="success")
        self.prev_button = w.Button(description=_("< previous"))
        self.next_button = w.Button(description=_("next >"))
        self.status = w.HTML()
        self.dropdown.observe(lambda change: self.select(change["new"]), names="value")
        self.save_button.on_click(lambda _: self.save())
        self.prev_button.on_click(lambda _: self._step(-1))
        self.next_button.on_click(lambda _: self._step(1))
        self.widget = w.VBox(
            [w.HBox([self.prev_button, self.dropdown, self.next_button]), self.image, self.text, w.HBox([self.save_button, self.status])]
        )
        if names:
            self.select(names[0])
        else:
            self.status.value = _esc(_("No captioned images yet: run the tagging step first."))

    def select(self, name: str) -> None:
        if name not in self.captions:
            return
        if self.dropdown.value != name:
            self.dropdown.value = name  # fires select again through the observer; harmless
            return
        path, caption = self.captions[name]
        try:
            self.image.value = f'<img src="{_thumbnail_data_uri(path, self.thumb)}">'
        except Exception as e:
            self.image.value = _esc(_("cannot show: {error}").format(error=e))
        self.text.value = caption
        self.status.value = ""

    def _step(self, delta: int) -> None:
        names = list(self.captions)
        if names and self.dropdown.value in names:
            self.select(names[(names.index(self.dropdown.value) + delta) % len(names)])

    def save(self) -> str:
        from colabkit.dataset.pipeline import set_caption
        from colabkit.errors import ColabkitError

        name = self.dropdown.value
        try:
            text = set_caption(self.project_name, name, self.text.value, self.activation_tag)
        except ColabkitError as e:
            self.status.value = f'<span style="color:#b00020">{_esc(e)}</span>'
            return ""
        self.captions[name] = (self.captions[name][0], text)
        self.text.value = text
        self.status.value = f'<span style="color:#1b7f3b">{_esc(_("saved {file}").format(file=name))}</span>'
        return text

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def show_caption_editor(project_name: str, activation_tag: str = "") -> CaptionEditor:
    from IPython.display import display

    editor = CaptionEditor(project_name, activation_tag)
    display(editor.widget)
    return editor

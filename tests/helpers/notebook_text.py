"""The notebooks' text in other languages: one source per notebook plus a translation of its text.

What a person reads in a notebook is cut into messages of a gettext catalog (domain ``notebooks``, in
``notebooks/locale/``; Babel reads and writes it, like the package's own catalog):

- a markdown cell: each paragraph (blocks between blank lines);
- a form cell: the ``@title`` text, each run of ``@markdown`` lines, each run of full-line comments, and each
  sentence-like string literal (two words or more) the cell prints itself (the install cell's message when pip fails).

Code, form-field names and values are never translated. A ``@settings Class: field, field`` line (in a markdown
cell, or ``# @settings ...`` in a form cell) becomes one line per setting with its one description
(``colabkit.choices.setting``), in the notebook's language: the notebooks, the CLI's ``--help`` and
``docs/settings.md`` say the same thing. The first cell's ``language`` field defaults to the notebook's language.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "notebooks" / "locale"
DOMAIN = "notebooks"
POT = LOCALE / f"{DOMAIN}.pot"
TRANSLATED = ("es",)
LANGUAGE_FIELD = {"en": "English", "es": "Español"}  # the first cell's dropdown

_TITLE = re.compile(r"^(?P<indent>\s*)# @title (?P<text>.*?)(?P<form>\s*\{[^{}]*\})?\s*$")
_MARKDOWN = re.compile(r"^(?P<indent>\s*)# @markdown(?: (?P<text>.*))?$")
_COMMENT = re.compile(r"^(?P<indent>\s*)# (?!@)(?P<text>.*)$")
_SETTINGS = re.compile(r"^(?P<prefix>\s*# )?@settings (?P<cls>\w+): (?P<names>.+)$")
_CODE_SPAN = re.compile(r"`[^`]+`")


# -- cutting a notebook into messages, and putting translations back -------------------------------------------

def _markdown_parts(source: str) -> list[tuple[bool, str]]:
    """(is a message, text) pieces of a markdown cell that join back into it: paragraphs are messages; blank lines
    and ``@settings`` lines are not."""
    parts = []
    for piece in re.split(r"(\n\s*\n|(?:^|\n)@settings [^\n]*)", source):
        if piece:
            parts.append((bool(piece.strip()) and not re.match(r"\n?@settings ", piece) and not piece.isspace(), piece))
    return parts


def _code_runs(source: str):
    """(kind, indent, [texts], [lines]) runs of a form cell's lines: title, markdown, comment, settings or code."""
    runs = []
    for line in source.split("\n"):
        for kind, pattern in (("settings", _SETTINGS), ("title", _TITLE), ("markdown", _MARKDOWN),
                              ("comment", _COMMENT)):
            m = pattern.match(line)
            if m:
                break
        else:
            kind, m = "code", None
        text = (m["text"] or "") if m and kind != "settings" else line
        indent = m["indent"] if m and kind != "settings" else ""
        if runs and kind in ("markdown", "comment") and runs[-1][0] == kind and runs[-1][1] == indent:
            runs[-1][2].append(text)
            runs[-1][3].append(line)
        else:
            runs.append((kind, indent, [text], [line]))
    return runs


def _literal(node) -> str | None:
    """The text of a string literal as its message: an f-string keeps its ``{expressions}`` (literal braces doubled)."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(v.value.replace("{", "{{").replace("}", "}}"))
            elif v.conversion == -1 and v.format_spec is None:
                parts.append("{" + ast.unparse(v.value) + "}")
            else:
                return None  # conversions and format specs: not worth a message format of their own
        return "".join(parts)
    return None


def _strings(source: str):
    """(node, text) for each sentence-like string literal of a form cell (two words or more, not a form field's
    value): the one message a cell prints itself, e.g. the install cell's SystemExit."""
    import ast

    lines = source.split("\n")
    tree = ast.parse(source)
    parts_of_fstrings = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in parts_of_fstrings:
            continue
        if isinstance(node, ast.JoinedStr):
            text = _literal(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if text and len(text.split()) >= 2 and "# @param" not in lines[node.lineno - 1]:
            found.append((node, text))
    return sorted(found, key=lambda nt: (nt[0].lineno, nt[0].col_offset))


def _render_literal(text: str, fstring: bool, indent: int, first_room: int, width: int = 118) -> str:
    """``text`` as one or more adjacent string literals (implicit concatenation), wrapped at spaces outside braces."""
    words, cur, depth = [], "", 0
    for ch in text:
        cur += ch
        depth += (ch == "{") - (ch == "}")
        if ch == " " and depth == 0:
            words.append(cur)
            cur = ""
    words.append(cur)
    prefix = "f" if fstring else ""
    quote = lambda t: prefix + '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    pieces, cur, room = [], "", first_room
    for w in words:
        if cur and len(quote(cur + w)) > room:
            pieces.append(quote(cur))
            cur, room = "", width - indent
        cur += w
    pieces.append(quote(cur))
    if len(pieces) == 1:
        return pieces[0]
    return "(" + ("\n" + " " * (indent + 1)).join(pieces) + ")"  # parenthesized: valid wherever the literal was


def _translate_strings(source: str, tr) -> str:
    import ast

    lines = source.split("\n")

    def offset(lineno: int, col: int) -> int:  # ast columns count UTF-8 bytes
        return sum(len(ln) + 1 for ln in lines[:lineno - 1]) + len(lines[lineno - 1].encode()[:col].decode())

    out = source
    for node, text in reversed(_strings(source)):
        new = tr(text)
        if new == text:
            continue
        start, end = offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)
        col = len(lines[node.lineno - 1].encode()[:node.col_offset].decode())
        out = out[:start] + _render_literal(new, isinstance(node, ast.JoinedStr), col, 117 - col) + out[end:]
    return out


def messages(nb) -> list[str]:
    """Every message of a notebook (jupytext's cells), in order."""
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found += [text for is_message, text in _markdown_parts(cell.source) if is_message]
        else:
            for kind, _indent, texts, _lines in _code_runs(cell.source):
                if kind in ("title", "markdown", "comment") and "\n".join(texts).strip():
                    found.append("\n".join(texts))
            found += [text for _node, text in _strings(cell.source)]
    return found


def _translate_cell(cell, tr) -> None:
    if cell.cell_type == "markdown":
        cell.source = "".join(tr(text) if is_message else text for is_message, text in _markdown_parts(cell.source))
        return
    cell.source = _translate_strings(cell.source, tr)  # first: on the source as written (ast's offsets)
    out = []
    for kind, indent, texts, lines in _code_runs(cell.source):
        joined = "\n".join(texts)
        if kind not in ("title", "markdown", "comment") or not joined.strip():
            out += lines
        elif kind == "title":
            m = _TITLE.match(lines[0])
            out.append(f"{indent}# @title {tr(joined)}{m['form'] or ''}")
        else:
            prefix = f"{indent}# @markdown " if kind == "markdown" else f"{indent}# "
            out += [(prefix + t).rstrip() for t in tr(joined).split("\n")]
    cell.source = "\n".join(out)


def _expand_settings(cell) -> None:
    from colabkit.choices import describe
    from colabkit.cli_options import config_classes

    classes = config_classes()
    lines = []
    for line in cell.source.split("\n"):
        m = _SETTINGS.match(line.strip()) if cell.cell_type == "markdown" else _SETTINGS.match(line)
        if not m:
            lines.append(line)
            continue
        cls = classes[m["cls"]]  # a KeyError names a class that is not a step config
        for name in (n.strip() for n in m["names"].split(",")):
            text = describe(cls, name)
            if not text:
                raise KeyError(f"@settings {m['cls']}: {name} is not a described setting")
            lines.append(f"- **`{name}`**: {text}" if cell.cell_type == "markdown" else
                         f"{m['prefix']}@markdown - `{name}`: {text}")
    cell.source = "\n".join(lines)


def translations(lang: str) -> dict[str, str]:
    """msgid -> translation for one language ({} for English); untranslated and fuzzy messages are left out."""
    if lang == "en":
        return {}
    from colabkit.catalogs import po_path, read_catalog

    path = po_path(lang, LOCALE, DOMAIN)
    if not path.exists():
        return {}
    return {m.id: m.string for m in read_catalog(path, locale=lang) if m.id and m.string and not m.fuzzy}


def localize(nb, lang: str) -> None:
    """Translate the notebook's text into ``lang`` and expand its ``@settings`` lines."""
    from colabkit import i18n

    table = translations(lang)
    before = i18n._language
    try:
        i18n.set_language(lang)
        for cell in nb.cells:
            if table:
                _translate_cell(cell, lambda text: table.get(text, text))
            _expand_settings(cell)
    finally:
        i18n._language = before


# -- the catalog ---------------------------------------------------------------------------------------------

def extract_catalog(sources: list[Path]):
    import jupytext

    from colabkit.catalogs import new_catalog

    catalog = new_catalog(DOMAIN)
    for src in sources:
        for text in messages(jupytext.read(str(src), fmt="py:percent")):
            catalog.add(text, locations=[(f"notebooks/{src.name}", None)])
    return catalog


def update_catalogs(sources: list[Path]) -> list[Path]:
    """Write notebooks/locale/notebooks.pot and bring each language's .po up to it (new messages empty)."""
    from colabkit.catalogs import po_path, po_text, updated

    template = extract_catalog(sources)
    LOCALE.mkdir(parents=True, exist_ok=True)
    POT.write_text(po_text(template), encoding="utf-8")
    written = [POT]
    for lang in TRANSLATED:
        path = po_path(lang, LOCALE, DOMAIN)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(po_text(updated(template, path, lang)), encoding="utf-8")
        written.append(path)
    return written


def problems(sources: list[Path]) -> list[str]:
    """Stale .pot, untranslated messages, and translations whose `code spans` (names, files, values) differ."""
    from colabkit.catalogs import po_text

    lines = []
    template = extract_catalog(sources)
    if not POT.exists() or POT.read_text(encoding="utf-8") != po_text(template):
        lines.append(f"{POT.name} is not current: run python tests/helpers/notebooks.py")
    for lang in TRANSLATED:
        table = translations(lang)
        for m in template:
            if not m.id:
                continue
            if m.id not in table:
                lines.append(f"{lang}: untranslated: {m.id!r}")
            elif sorted(_CODE_SPAN.findall(m.id)) != sorted(_CODE_SPAN.findall(table[m.id])):
                lines.append(f"{lang}: code spans differ: {m.id!r} -> {table[m.id]!r}")
    return lines

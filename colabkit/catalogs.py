"""The message catalogs, for maintainers: extract, update, compile, check (Babel; the product itself needs only
the standard library's gettext to read the compiled ``.mo``).

    python scripts/i18n.py extract   # colabkit/**/*.py -> colabkit/locale/colabkit.pot
    python scripts/i18n.py update    # .pot -> colabkit/locale/<lang>/LC_MESSAGES/colabkit.po (new msgids, empty)
    python scripts/i18n.py compile   # .po -> .mo (committed and shipped in the wheel)
    python scripts/i18n.py check     # every message translated, same placeholders, .pot/.mo current

The usual round after changing messages: ``extract``, ``update``, translate the empty ``msgstr`` in the ``.po``,
``compile``. The ``.pot`` holds file names without line numbers, so moving code does not make it stale.
"""

from __future__ import annotations

import io
import string
import sys
from datetime import datetime, timezone
from pathlib import Path

from colabkit.i18n import DOMAIN, LANGUAGES, LOCALE_DIR

PACKAGE = LOCALE_DIR.parent
ROOT = PACKAGE.parent
POT = LOCALE_DIR / f"{DOMAIN}.pot"
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
# Fixed dates: a regenerated catalog is byte for byte the same unless a message changed.
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
TRANSLATED = LANGUAGES[1:]


def po_path(lang: str, locale_dir: Path = LOCALE_DIR, domain: str = DOMAIN) -> Path:
    return locale_dir / lang / "LC_MESSAGES" / f"{domain}.po"


def new_catalog(domain: str = DOMAIN, locale: str | None = None):
    from babel.messages.catalog import Catalog

    from colabkit import __version__

    return Catalog(locale=locale, domain=domain, project="colabkit", version=__version__,
                   copyright_holder="colabkit", msgid_bugs_address="", creation_date=EPOCH, revision_date=EPOCH,
                   fuzzy=False)


def extract_catalog(package: Path = PACKAGE):
    """Every ``_``/``N_``/``ngettext`` message of the package's Python files."""
    from babel.messages.extract import extract_from_dir

    catalog = new_catalog()
    method_map = [("**/tests/**", "ignore"), ("**.py", "python")]
    for filename, lineno, message, comments, context in extract_from_dir(
            str(package), method_map, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",), strip_comment_tags=True):
        path = f"{package.name}/{filename}".replace("\\", "/")
        catalog.add(message, locations=[(path, None)], auto_comments=comments, context=context)
    return catalog


def po_text(catalog, **kwargs) -> str:
    from babel.messages.pofile import write_po

    buf = io.BytesIO()
    write_po(buf, catalog, width=100, include_lineno=False, sort_output=True, **kwargs)
    return buf.getvalue().decode("utf-8")


def read_catalog(path: Path, locale: str | None = None):
    from babel.messages.pofile import read_po

    with open(path, "rb") as f:
        return read_po(f, locale=locale)


def mo_bytes(catalog) -> bytes:
    from babel.messages.mofile import write_mo

    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    return buf.getvalue()


def updated(template, po_file: Path, lang: str):
    """The language's catalog with the template's messages: translations kept, new ones empty, gone ones dropped."""
    catalog = read_catalog(po_file, locale=lang) if po_file.exists() else new_catalog(template.domain, lang)
    catalog.update(template, no_fuzzy_matching=True, update_creation_date=False)
    if lang == "es":  # CLDR's third form (a million+) adds nothing a message here needs: the usual two
        catalog._num_plurals, catalog._plural_expr = 2, "(n != 1)"
    catalog.obsolete.clear()
    catalog.revision_date = EPOCH
    catalog.fuzzy = False
    return catalog


def extract(package: Path = PACKAGE, pot: Path = POT) -> Path:
    pot.parent.mkdir(parents=True, exist_ok=True)
    pot.write_text(po_text(extract_catalog(package)), encoding="utf-8")
    return pot


def update(pot: Path = POT, locale_dir: Path = LOCALE_DIR, domain: str = DOMAIN) -> list[Path]:
    template = read_catalog(pot)
    written = []
    for lang in TRANSLATED:
        path = po_path(lang, locale_dir, domain)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(po_text(updated(template, path, lang)), encoding="utf-8")
        written.append(path)
    return written


def compile_all(locale_dir: Path = LOCALE_DIR, domain: str = DOMAIN) -> list[Path]:
    written = []
    for lang in TRANSLATED:
        po = po_path(lang, locale_dir, domain)
        mo = po.with_suffix(".mo")
        mo.write_bytes(mo_bytes(read_catalog(po, locale=lang)))
        written.append(mo)
    return written


# -- checks (the tests call these; `check` prints them) ------------------------------------------------------

def placeholders(text: str) -> set[str]:
    """The ``str.format`` fields of a message, with their conversion and format spec: ``{n:d}`` -> ``{'n:d'}``."""
    found = set()
    for _literal, name, spec, conversion in string.Formatter().parse(text):
        if name is not None:
            found.add(name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else ""))
    return found


def _ids(message) -> list[str]:
    return list(message.id) if isinstance(message.id, (list, tuple)) else [message.id]


def _strs(message) -> list[str]:
    return list(message.string) if isinstance(message.string, (list, tuple)) else [message.string]


def problems(catalog, template=None) -> list[str]:
    """Untranslated or fuzzy messages, placeholders that differ from the msgid's, and (given the template) msgids
    the catalog lacks."""
    lines = []
    for m in catalog:
        if not m.id:
            continue
        ids, strs = _ids(m), _strs(m)
        if m.fuzzy or not all(strs):
            lines.append(f"untranslated: {ids[0]!r}")
            continue
        try:
            want = set().union(*(placeholders(i) for i in ids))
            for s in strs:
                got = placeholders(s)
                # Plural forms may leave out the number ("one image" for n == 1); no other difference is allowed.
                if got != want and not (len(ids) > 1 and got < want):
                    lines.append(f"placeholders differ: {ids[0]!r}: {sorted(want)} vs {s!r}: {sorted(got)}")
        except ValueError as e:
            lines.append(f"bad format string: {ids[0]!r} / {strs!r}: {e}")
    if template is not None:
        have = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}
        lines += [f"missing from the .po (run update): {m.id if isinstance(m.id, str) else m.id[0]!r}"
                  for m in template if m.id and (m.id if isinstance(m.id, str) else m.id[0]) not in have]
    return lines


def check(package: Path = PACKAGE, locale_dir: Path = LOCALE_DIR, pot: Path = POT) -> list[str]:
    lines = []
    template = extract_catalog(package)
    if not pot.exists() or pot.read_text(encoding="utf-8") != po_text(template):
        lines.append(f"{pot.name} is not current: run `python scripts/i18n.py extract update`")
    for lang in TRANSLATED:
        po = po_path(lang, locale_dir)
        catalog = read_catalog(po, locale=lang)
        lines += [f"{lang}: {p}" for p in problems(catalog, template)]
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.read_bytes() != mo_bytes(catalog):
            lines.append(f"{lang}: {mo.name} does not match {po.name}: run `python scripts/i18n.py compile`")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or set(args) - {"extract", "update", "compile", "check"}:
        print(__doc__)
        return 2
    for cmd in args:
        if cmd == "extract":
            print(extract())
        elif cmd == "update":
            print(*update(), sep="\n")
        elif cmd == "compile":
            print(*compile_all(), sep="\n")
        elif cmd == "check":
            found = check()
            print(*found, sep="\n") if found else print("catalogs: all messages translated, all current")
            return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

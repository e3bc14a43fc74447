"""The message catalogs: every message translated with the same placeholders, the committed .pot/.po/.mo current,
and the language chosen by set_language, COLABKIT_LANG or the locale."""

import subprocess
import sys
from pathlib import Path

import pytest

from colabkit import catalogs, i18n

pytest.importorskip("babel")
ROOT = Path(__file__).resolve().parents[2]


def test_committed_catalogs_are_complete_and_current():
    """Fails when a message in the source has no Spanish translation, a placeholder differs, the .pot is stale
    or the .mo was not compiled from the .po (the fix is printed: scripts/i18n.py extract update compile)."""
    assert catalogs.check() == []


@pytest.fixture
def package(tmp_path) -> Path:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text(
        'from colabkit.i18n import _, N_, ngettext\n'
        'LABEL = N_("Settings")\n'
        'def f(n, name):\n'
        '    print(_("No project {name!r} here.").format(name=name))\n'
        '    return ngettext("{n} image", "{n} images", n).format(n=n)\n')
    return pkg


def _check(pkg: Path) -> list[str]:
    return catalogs.check(package=pkg, locale_dir=pkg.parent / "locale", pot=pkg.parent / "locale" / "x.pot")


def _set_translations(po: Path, table: dict) -> None:
    catalog = catalogs.read_catalog(po, locale="es")
    for m in catalog:
        key = m.id if isinstance(m.id, str) else m.id[0]
        if key in table:
            m.string = table[key]
    po.write_text(catalogs.po_text(catalog), encoding="utf-8")


def test_a_message_without_translation_or_with_other_placeholders_fails(package):
    locale = package.parent / "locale"
    pot = catalogs.extract(package, locale / "x.pot")
    assert {m.id if isinstance(m.id, str) else m.id[0] for m in catalogs.read_catalog(pot) if m.id} == {
        "Settings", "No project {name!r} here.", "{n} image"}
    (po,) = catalogs.update(pot, locale)
    catalogs.compile_all(locale)
    found = _check(package)
    assert sorted(found) == ["es: untranslated: 'No project {name!r} here.'", "es: untranslated: 'Settings'",
                             "es: untranslated: '{n} image'"]

    _set_translations(po, {"Settings": "Ajustes", "No project {name!r} here.": "No hay ningún proyecto {nombre!r}.",
                           "{n} image": ("{n} imagen", "{n} imágenes")})
    catalogs.compile_all(locale)
    assert _check(package) == ["es: placeholders differ: 'No project {name!r} here.': ['name!r'] vs "
                               "'No hay ningún proyecto {nombre!r}.': ['nombre!r']"]

    _set_translations(po, {"No project {name!r} here.": "No hay ningún proyecto {name!r} aquí."})
    assert _check(package) == ["es: messages.mo does not match messages.po: run `python scripts/i18n.py compile`"
                               .replace("messages", "colabkit")]
    catalogs.compile_all(locale)
    assert _check(package) == []

    # The compiled catalog is what the standard library's gettext reads.
    import gettext

    t = gettext.translation("colabkit", localedir=str(locale), languages=["es"])
    assert t.gettext("No project {name!r} here.").format(name="p") == "No hay ningún proyecto 'p' aquí."
    assert t.ngettext("{n} image", "{n} images", 1).format(n=1) == "1 imagen"
    assert t.ngettext("{n} image", "{n} images", 3).format(n=3) == "3 imágenes"

    # A new message in the source makes the .pot stale and the new message untranslated.
    (package / "new.py").write_text('from colabkit.i18n import _\n_("Brand new.")\n')
    assert _check(package)[0].startswith("x.pot is not current")


def test_placeholders_are_compared_with_their_format():
    assert catalogs.placeholders("{n:d} of {total} ({share:.0%}) {name!r}") == {"n:d", "total", "share:.0%", "name!r"}
    assert catalogs.placeholders("no fields, {{literal}} braces") == set()


def test_language_from_set_language_env_and_locale(monkeypatch):
    for var in ("COLABKIT_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    i18n.set_language(None)
    assert i18n.language() == "en"
    monkeypatch.setenv("LANG", "es_AR.UTF-8")
    assert i18n.language() == "es"
    monkeypatch.setenv("COLABKIT_LANG", "en")
    assert i18n.language() == "en"
    monkeypatch.setenv("COLABKIT_LANG", "es")
    assert i18n.language() == "es"
    try:
        assert i18n.set_language("English") == "en" and i18n.language() == "en"
        assert i18n.set_language("Español") == "es"
    finally:
        i18n.set_language(None)


def test_spanish_is_shown_from_the_shipped_catalog():
    from colabkit.choices import describe
    from colabkit.train.config import TrainConfig

    try:
        i18n.set_language("es")
        assert "repeticiones" not in describe(TrainConfig, "project_name")
        assert "época" in describe(TrainConfig, "num_repeats")
        i18n.set_language("en")
        assert describe(TrainConfig, "num_repeats").startswith("How often each image is seen")
    finally:
        i18n.set_language(None)


def test_the_cli_speaks_spanish_with_colabkit_lang(tmp_path):
    env = {"COLABKIT_LANG": "es", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "COLABKIT_DRIVE_ROOT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "colabkit", "train", "--help"], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "repeticiones" in out and "predeterminado" in out.lower()


def test_the_wheel_ships_the_compiled_catalogs():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "locale/*/LC_MESSAGES/*.mo" in cfg["options.package_data"]["colabkit"].split()
    assert (ROOT / "colabkit" / "locale" / "es" / "LC_MESSAGES" / "colabkit.mo").exists()


def _calls(tree, name: str):
    import ast

    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name]


def _translated(node) -> bool:
    """False for a message written in place: a string, an f-string, ``"...".format(...)``, ``"..." + x``."""
    import ast

    if isinstance(node, (ast.Constant, ast.JoinedStr)):
        return False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _translated(node.func.value)
    if isinstance(node, ast.BinOp):
        return _translated(node.left)
    return True  # _("..."), ngettext(...), str(e), a helper's or a variable's text (checked where it is made)


# Every module: the errors it raises and the problems its configs yield go through gettext.
WRAPPED = sorted(str(p.relative_to(ROOT / "colabkit")) for p in (ROOT / "colabkit").rglob("*.py"))


@pytest.mark.parametrize("module", WRAPPED)
def test_messages_of_wrapped_modules_go_through_gettext(module):
    import ast

    tree = ast.parse((ROOT / "colabkit" / module).read_text())
    plain = [n.lineno for n in _calls(tree, "ColabkitError") if n.args and not _translated(n.args[0])]
    plain += [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Yield) and isinstance(n.value, (ast.JoinedStr,
                                                                                                    ast.Constant))]
    assert plain == [], f"colabkit/{module}: untranslated messages at lines {plain}"


def test_no_f_string_inside_gettext():
    """The msgid must be a constant the catalog holds: ``_(f"...")`` would never be translated."""
    import ast

    bad = []
    for path in sorted((ROOT / "colabkit").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for name in ("_", "N_", "ngettext"):  # _(text) of a text marked with N_ elsewhere is fine
            bad += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in _calls(tree, name)
                    if any(isinstance(a, (ast.JoinedStr, ast.BinOp)) for a in n.args)]
    assert bad == []

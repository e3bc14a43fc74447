"""Every message a person reads goes through here: the standard gettext machinery, catalogs in the package.

Usage in product code::

    from colabkit.i18n import _, N_
    raise ColabkitError(_("No project {name!r} under {root}.").format(name=name, root=root))

- ``_(text)`` translates now, in the language in effect (``set_language`` / ``COLABKIT_LANG`` / the locale).
- ``N_(text)`` only marks a text for extraction (module-level constants, setting descriptions); translate it
  with ``_()`` where it is shown.
- Placeholders are named (``{name}``), never f-strings: the msgid must be a constant that the catalogs hold,
  and a translation must keep exactly the same placeholders (a test checks).
- Numbers and file names are never translated: they go in placeholders.

The catalogs are ``colabkit/locale/<lang>/LC_MESSAGES/colabkit.mo`` (compiled from the ``.po`` beside it).
English is the source language: a message without a translation shows as written.
"""

from __future__ import annotations

import gettext as _gettext
import os
from pathlib import Path

DOMAIN = "colabkit"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "es")  # the first is the source language
DEFAULT = "en"

_language: str | None = None  # set_language's choice; None: from the environment
_translations: dict[str, _gettext.NullTranslations] = {}


def _from_environment() -> str:
    """COLABKIT_LANG, else the locale (gettext's own variables, in gettext's order), else English."""
    explicit = os.environ.get("COLABKIT_LANG", "").strip().lower()
    if explicit:
        return normalize(explicit)
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        if value:
            for part in value.split(":"):  # LANGUAGE may list several
                lang = part.split(".")[0].split("_")[0].lower()
                if lang in LANGUAGES:
                    return lang
            break
    return DEFAULT


def normalize(lang: str) -> str:
    """``"es"``, ``"es_ES.UTF-8"``, ``"Español"`` -> ``"es"``; anything unknown -> English."""
    lang = (lang or "").strip().lower()
    if lang.startswith(("es", "español", "espanol", "spanish")):
        return "es"
    return DEFAULT


def language() -> str:
    """The language in effect: ``"en"`` or ``"es"``."""
    return _language or _from_environment()


def set_language(lang: str | None) -> str:
    """Choose the language for this process (a notebook's ``language`` field); None: back to the environment."""
    global _language
    _language = normalize(lang) if lang else None
    return language()


def translation(lang: str | None = None) -> _gettext.NullTranslations:
    lang = lang or language()
    if lang not in _translations:
        _translations[lang] = _gettext.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=[lang],
                                                   fallback=True)
    return _translations[lang]


def _(message: str) -> str:
    """Translate ``message`` into the language in effect."""
    return translation().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translation().ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark ``message`` for extraction without translating it here."""
    return message

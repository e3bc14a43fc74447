"""No network: tell it early, in one sentence, and name the built-in tiny models that need none.

Without this a tagger or captioner on a machine without internet waits through huggingface_hub's
retries (~25 s of "Retrying in 8s") and ends in an error that does not say what *would* work.
"""

from __future__ import annotations

import os
import socket
import urllib.parse

from colabkit.i18n import _

# The built-in tiny models (colabkit/tiny): random weights in the real architectures, built locally, run on a CPU.
BUILTIN = {"base_model": "tiny-sdxl", "tagger_model": "tiny-wd14", "caption_model": "tiny-blip"}


def offline() -> bool:
    """True when the environment asks for no network (HF_HUB_OFFLINE or COLABKIT_OFFLINE set to a true value)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "COLABKIT_OFFLINE"))


def hub_url() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Can a TCP connection to ``url``'s host be opened (one try, a few seconds at most)?"""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def no_network_reason(url: str | None = None) -> str | None:
    """Why a download from ``url`` (default: the hub) cannot happen now, or None when it can be tried."""
    if offline():
        return _("this session is offline (HF_HUB_OFFLINE or COLABKIT_OFFLINE is set)")
    url = url or hub_url()
    if not reachable(url):
        return _("{host} cannot be reached (no internet connection?)").format(host=urllib.parse.urlsplit(url).hostname)
    return None


def builtin_hint(field: str) -> str:
    """One sentence naming the built-in model for ``field`` (and the others), for messages about downloads."""
    others = ", ".join(f"{name} ({f})" for f, name in BUILTIN.items())
    return _("To try the flow without a download, set {field} to '{model}': built in, runs offline and on a CPU, "
             "random weights (for trying colabkit out, not for a real LoRA). Built-in tiny models: {others}.").format(
        field=field, model=BUILTIN[field], others=others)

"""Resumable, verified downloads of big model files (plain HTTP(S) with Range requests, standard library only).

A download writes ``<name>.part`` beside its destination and appends to it; a runtime that is cut off (Colab does
that) resumes from the bytes already there. Only a file whose size (and sha256, where known) checks out is renamed
to its final name, atomically, so a file under its final name is always complete. A small ``.<name>.verified.json``
beside it records the check, so the next day does not re-read 7 GB from Drive to hash it again.

Tokens: ``HF_TOKEN`` is sent to huggingface.co only, ``CIVITAI_TOKEN`` to civitai.com only; neither is ever
forwarded to the CDN a download redirects to, printed, or put in an error message. Each is read from the environment,
else from Colab's Secrets panel (``google.colab.userdata``: the key icon; it sets no environment variable). A secret
the notebook was not granted access to is said when the download is refused, with the switch to turn on.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from colabkit import files
from colabkit.errors import ColabkitError
from colabkit.i18n import _

CHUNK = 8 * 2**20
ProgressFn = Callable[[int, int | None], None]  # (bytes done, total or None)

_SECRET_PARAMS = {"token", "api_key", "apikey", "key", "access_token", "auth", "signature", "x-amz-signature"}


def cache_dir() -> Path:
    """colabkit's local (not Drive) cache."""
    from colabkit.project import cache_home

    return cache_home()


def redact(url: str) -> str:
    """The URL with secret-looking query values replaced by ***, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    safe = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in query]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(safe, safe="*")))


HF_TOKEN_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
CIVITAI_TOKEN_NAMES = ("CIVITAI_TOKEN", "CIVITAI_API_KEY")
_secret_notes: dict[str, str] = {}  # token name -> why Colab's Secrets did not give it (said on a refusal)


def _token_names(host: str) -> tuple[str, ...]:
    host = host.lower()
    if host == "huggingface.co" or host.endswith(".huggingface.co") or host == "hf.co":
        return HF_TOKEN_NAMES
    if host == "civitai.com" or host.endswith(".civitai.com"):
        return CIVITAI_TOKEN_NAMES
    return ()


def _colab_secret(name: str) -> str | None:
    """The secret ``name`` from Colab's Secrets panel, or None (not in Colab, not set, or not granted)."""
    try:
        from google.colab import userdata
    except ImportError:
        return None
    try:
        value = userdata.get(name)
    except Exception as e:  # userdata's own error types: SecretNotFoundError, NotebookAccessError, TimeoutException
        kind = type(e).__name__
        if kind == "NotebookAccessError":
            _secret_notes[name] = _(
                "Colab's Secrets has {name}, but this notebook was not given access to it: click the key icon "
                "(Secrets) on the left and switch on 'Notebook access' beside {name}, then run the cell again."
            ).format(name=name)
        elif kind != "SecretNotFoundError":
            _secret_notes[name] = _("Colab's Secrets could not be read for {name} ({kind}).").format(name=name,
                                                                                                  kind=kind)
        return None
    _secret_notes.pop(name, None)
    return value if isinstance(value, str) else None


def token_for(host: str) -> str | None:
    """The access token for ``host`` (huggingface.co / civitai.com only): the environment first, then Colab's
    Secrets. Never printed; sent only to that host (``_auth_header``)."""
    names = _token_names(host)
    for name in names:
        value = os.environ.get(name)
        if value and value.strip():
            return value.strip()
    for name in names:
        value = _colab_secret(name)
        if value and value.strip():
            return value.strip()
    return None


def _auth_header(host: str) -> dict[str, str]:
    token = token_for(host)
    return {"Authorization": f"Bearer {token}"} if token else {}


class _NoAuthAcrossHosts(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but drop the Authorization header when the host changes (HF -> its CDN)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).hostname != urllib.parse.urlsplit(req.full_url).hostname:
            for name in list(new.headers):
                if name.lower() == "authorization":
                    del new.headers[name]
            new.unredirected_hdrs.pop("Authorization", None)
        return new


_opener = urllib.request.build_opener(_NoAuthAcrossHosts)


def _request(url: str, *, method: str = "GET", start: int = 0, timeout: float = 60):
    headers = {"User-Agent": "colabkit (+https://github.com/)", "Accept-Encoding": "identity"}
    headers.update(_auth_header(urllib.parse.urlsplit(url).hostname or ""))
    if start:
        headers["Range"] = f"bytes={start}-"
    return _opener.open(urllib.request.Request(url, headers=headers, method=method), timeout=timeout)


def _http_error(url: str, e: urllib.error.HTTPError) -> ColabkitError:
    host = urllib.parse.urlsplit(url).hostname or ""
    if e.code in (401, 403):
        if "huggingface" in host or host == "hf.co":
            fix = _("The model may be gated or private: open its page on huggingface.co while logged in, accept its "
                    "terms, and set an access token as HF_TOKEN (Colab: the key icon, 'Secrets').")
        elif "civitai" in host:
            fix = _("Civitai needs an API key for this download: create one in your Civitai account settings and "
                    "set it as CIVITAI_TOKEN (Colab: the key icon, 'Secrets').")
        else:
            fix = _("The server refused the download: the link may need a login or may have expired.")
        notes = [_secret_notes[n] for n in _token_names(host) if n in _secret_notes]
        if notes:
            fix += " " + " ".join(notes)
        return ColabkitError(_("Download refused (HTTP {code}) for {url}. {fix}").format(
                                 code=e.code, url=redact(url), fix=fix))
    if e.code == 404:
        return ColabkitError(_("Nothing found at {url} (HTTP 404). Check the address; on Hugging Face use the "
                               "file's 'download' link (.../resolve/main/<file>), not the page.").format(
                                 url=redact(url)))
    return ColabkitError(_("Download failed (HTTP {code} {reason}) for {url}. Try again in a minute.").format(
                             code=e.code, reason=e.reason, url=redact(url)))


@dataclass(frozen=True)
class RemoteInfo:
    size: int | None
    accepts_ranges: bool
    final_url_host: str


def probe(url: str, timeout: float = 10) -> RemoteInfo:
    """A HEAD request: the size the server announces. Raises ColabkitError for refusals and missing files."""
    try:
        with _request(url, method="HEAD", timeout=timeout) as r:
            length = r.headers.get("Content-Length")
            return RemoteInfo(int(length) if length and length.isdigit() else None,
                              r.headers.get("Accept-Ranges", "").lower() == "bytes",
                              urllib.parse.urlsplit(r.geturl()).hostname or "")
    except urllib.error.HTTPError as e:
        raise _http_error(url, e) from None


def _marker(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified.json")


def _quick_id(path: Path) -> str:
    """sha256 of the size and the first and last MB: recognises the same file even if Drive changed its mtime."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(2**20))
        f.seek(max(0, size - 2**20))
        h.update(f.read(2**20))
    return h.hexdigest()


def write_verified_marker(path: Path, sha256: str | None) -> None:
    st = path.stat()
    files.write_json(_marker(path), {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "quick_id": _quick_id(path),
                                     "sha256": sha256})


def verified_sha256(path: Path) -> str | None:
    """The sha256 recorded when ``path`` was last verified, if the file has not changed since."""
    try:
        rec = json.loads(_marker(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return None
    if rec.get("size") != st.st_size:
        return None
    if rec.get("mtime_ns") == st.st_mtime_ns or rec.get("quick_id") == _quick_id(path):
        return rec.get("sha256")
    return None


def verify_file(path: Path, *, size: int | None, sha256: str | None, hash_if_unverified: bool = True) -> None:
    """Raise ColabkitError unless ``path`` has the expected size and sha256 (hashing once, then trusting the marker)."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise ColabkitError(_("{name} has {actual:,} bytes but should have {size:,}: it is not the expected file or "
                              "it is incomplete. Delete {path} and run again to download it fresh.").format(
                                name=path.name, actual=actual, size=size, path=path))
    if sha256 and hash_if_unverified:
        known = verified_sha256(path)
        if known is None:
            known = files.sha256_file(path)
            if known == sha256.lower():
                write_verified_marker(path, known)
        if known != sha256.lower():
            raise ColabkitError(_("{name} does not have the published sha256 (expected {sha256}..., found "
                                  "{known}...): the file is damaged or a different version. Delete {path} and run "
                                  "again to download it fresh.").format(
                                    name=path.name, sha256=sha256[:12], known=known[:12], path=path))


def _progress_fn(progress: bool | ProgressFn, name: str) -> tuple[ProgressFn | None, Callable[[], None]]:
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=name, mininterval=1.0)

    def update(done: int, total: int | None) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return update, bar.close


def download(url: str, dest: str | os.PathLike, *, size: int | None = None, sha256: str | None = None,
             progress: bool | ProgressFn = True, retries: int = 4, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if present; verify size/sha256; rename atomically."""
    from colabkit.offline import builtin_hint, no_network_reason

    dest = Path(dest)
    reason = no_network_reason(url)
    if reason:  # said at once, not after minutes of retries
        raise ColabkitError(_("{name} is not downloaded yet and {reason}. Connect to the internet, or put the file "
                              "at {dest}. ").format(name=dest.name, reason=reason, dest=dest) + builtin_hint("base_model"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    # Always hashed (cheap next to the network): the recorded sha256 identifies the file for caches later.
    hasher = _Digest(True)
    done = part.stat().st_size if part.exists() else 0
    if size is not None and done > size:
        part.unlink()  # longer than the real file: not a prefix of it, start over
        done = 0
    if done:
        with open(part, "rb") as f:  # the hash must cover the bytes from earlier sessions too
            while block := f.read(CHUNK):
                hasher.update(block)
    report, close = _progress_fn(progress, dest.name)
    total = size
    attempt = 0
    try:
        while True:
            try:
                done, total = _fetch_into(url, part, done, total, hasher, report, timeout)
                break
            except urllib.error.HTTPError as e:
                if e.code == 416 and done and (total is None or done >= total):
                    break  # "range not satisfiable": everything is already here
                if e.code < 500 or attempt >= retries:
                    raise _http_error(url, e) from None
            except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, IncompleteRead
                if attempt >= retries:
                    reason = getattr(e, "reason", e)
                    raise ColabkitError(
                        _("Download of {name} from {url} failed ({reason}). What arrived is kept in {name2}: run "
                          "again and it continues from there. ").format(
                            name=dest.name, url=redact(url), reason=reason, name2=part.name) + builtin_hint("base_model")
                    ) from None
            attempt += 1
            time.sleep(min(30, 2 ** attempt))
            done = part.stat().st_size if part.exists() else 0
    finally:
        close()
    final = part.stat().st_size
    if total is not None and final != total:
        raise ColabkitError(_("Download of {name} ended at {final:,} of {total:,} bytes. Run again to continue.").format(
                                name=dest.name, final=final, total=total))
    if size is not None and final != size:
        part.unlink()
        raise ColabkitError(_("{url} gave {final:,} bytes, not the expected {size:,}: it is a different file. Check "
                              "the address.").format(url=redact(url), final=final, size=size))
    digest = hasher.hexdigest()
    if sha256 and digest != sha256.lower():
        part.unlink()  # a wrong byte somewhere cannot be found and fixed; the next run starts clean
        raise ColabkitError(_("The download of {name} is damaged (sha256 {digest}..., expected {sha256}...). It was "
                              "deleted; run again to download it fresh.").format(
                                name=dest.name, digest=digest[:12], sha256=sha256[:12]))
    os.replace(part, dest)
    files.fsync_dir(dest.parent)
    write_verified_marker(dest, digest)
    return dest


class _Digest:
    """sha256 of the bytes written so far, or nothing when no hash is expected."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.h = hashlib.sha256() if enabled else None

    def reset(self) -> None:
        self.h = hashlib.sha256() if self.enabled else None

    def update(self, data: bytes) -> None:
        if self.h is not None:
            self.h.update(data)

    def hexdigest(self) -> str | None:
        return self.h.hexdigest() if self.h is not None else None


def _fetch_into(url: str, part: Path, done: int, total: int | None, hasher: _Digest, report: ProgressFn | None,
                timeout: float) -> tuple[int, int | None]:
    with _request(url, start=done, timeout=timeout) as r:
        status = getattr(r, "status", 200)
        length = r.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if done and status == 200:  # the server ignored Range: it sends everything again
            done = 0
            hasher.reset()
        if status == 206:
            content_range = r.headers.get("Content-Range", "")  # "bytes 100-199/1000"
            if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
                total = int(content_range.rsplit("/", 1)[1])
            elif length is not None:
                total = done + length
        elif length is not None:
            total = length
        mode = "ab" if done else "wb"
        with open(part, mode) as f:
            while block := r.read(CHUNK):
                f.write(block)
                hasher.update(block)
                done += len(block)
                if report:
                    report(done, total)
            f.flush()
            os.fsync(f.fileno())
    if total is not None and done < total:
        # The server closed the connection early without an error: resume from here on the next attempt.
        raise ConnectionError(f"connection closed after {done:,} of {total:,} bytes")
    return done, total

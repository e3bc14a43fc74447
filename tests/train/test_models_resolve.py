"""base_model -> file: presets, paths, URLs; resumable verified downloads against a local HTTP server."""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from colabkit.errors import ColabkitError
from helpers.single_file import write_sd15_like, write_single_file
from colabkit.train.models import PRESETS, find_preset, fingerprint, resolve_base_model
from colabkit.train.models import download as dl


@pytest.fixture(scope="module")
def tiny_file(tiny_sdxl, tmp_path_factory):
    return write_single_file(tiny_sdxl, tmp_path_factory.mktemp("sf") / "tiny-sdxl.safetensors")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    # Downloads' local cache (and only it) goes to a temporary folder; tiny-sdxl is already resolved by then.
    monkeypatch.setenv("COLABKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_presets_table():
    assert list(PRESETS) == ["SDXL base 1.0", "Pony Diffusion V6 XL", "Animagine XL 3.1", "Illustrious XL 0.1",
                             "NoobAI-XL V-Pred 1.0", "NoobAI-XL Eps 1.1"]
    sdxl = PRESETS["SDXL base 1.0"]
    assert sdxl.url == ("https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/"
                        "sd_xl_base_1.0.safetensors")
    assert sdxl.size == 6_938_078_334
    assert sdxl.sha256 == "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b"
    for p in PRESETS.values():
        assert all(u.startswith("https://huggingface.co/") and "/resolve/" in u for u in p.urls)
        assert p.prediction_type == ("v_prediction" if "V-Pred" in p.name else "epsilon")
        assert p.sha256 is None or (len(p.sha256) == 64 and p.sha256 == p.sha256.lower())
    assert PRESETS["Pony Diffusion V6 XL"].prompt_prefix.startswith("score_9")
    assert PRESETS["Pony Diffusion V6 XL"].clip_skip == 2
    assert find_preset("pony") is find_preset("Pony Diffusion V6 XL") is find_preset("pony_diffusion_v6_xl")
    assert find_preset("sdxl base 1.0").name == "SDXL base 1.0"
    assert find_preset("animagine-xl-3.1.safetensors").name == "Animagine XL 3.1"
    assert find_preset("something else") is None
    # the anchor trainer's addresses; no published hash at hand: said, not guessed
    vpred, eps = PRESETS["NoobAI-XL V-Pred 1.0"], PRESETS["NoobAI-XL Eps 1.1"]
    assert vpred.url == "https://huggingface.co/Laxhar/noobai-XL-Vpred-1.0/resolve/main/NoobAI-XL-Vpred-v1.0.safetensors"
    assert eps.url == "https://huggingface.co/Laxhar/noobai-XL-1.1/resolve/main/NoobAI-XL-v1.1.safetensors"
    assert vpred.sha256 is eps.sha256 is None and all("Not hash-checked" in p.notes for p in (vpred, eps))
    assert find_preset("noobai-vpred") is vpred and find_preset("NoobAI Eps 1.1") is eps


def test_tiny_sdxl(tiny_sdxl):
    r = resolve_base_model("tiny-sdxl")
    assert (r.kind, r.path, r.source, r.prediction_type) == ("diffusers", tiny_sdxl, "builtin", "epsilon")
    assert fingerprint(r) == fingerprint(resolve_base_model(" tiny-sdxl "))


def test_paths(tiny_file, tiny_sdxl, tmp_path, drive):
    r = resolve_base_model(str(tiny_file))
    assert (r.kind, r.source, r.name, r.info.family) == ("single_file", "path", "tiny-sdxl.safetensors", "sdxl")
    folder = resolve_base_model(str(tiny_sdxl))
    assert folder.kind == "diffusers" and folder.path == tiny_sdxl
    # Relative to Drive's MyDrive, as people write them.
    (drive / "models").mkdir()
    (drive / "models" / "m.safetensors").write_bytes(tiny_file.read_bytes())
    assert resolve_base_model("models/m.safetensors").path == drive / "models" / "m.safetensors"
    assert resolve_base_model("MyDrive/models/m.safetensors").path == drive / "models" / "m.safetensors"
    with pytest.raises(ColabkitError, match="No file or folder"):
        resolve_base_model(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ColabkitError, match="not a known preset"):
        resolve_base_model("SDXL base 2.0")
    with pytest.raises(ColabkitError, match="is empty"):
        resolve_base_model("  ")
    with pytest.raises(ColabkitError, match="Stable Diffusion 1.x"):
        resolve_base_model(str(write_sd15_like(tmp_path / "sd15.safetensors")))
    with pytest.raises(ColabkitError, match="not a diffusers model"):
        resolve_base_model(str(tmp_path))


def test_fingerprint_is_about_content(tiny_file, tmp_path):
    copy = tmp_path / "elsewhere.safetensors"
    copy.write_bytes(tiny_file.read_bytes())
    assert fingerprint(resolve_base_model(str(copy))) == fingerprint(resolve_base_model(str(tiny_file)))
    other = write_single_file(resolve_base_model("tiny-sdxl").path, tmp_path / "v.safetensors",
                              metadata={"modelspec.title": "another"})
    assert fingerprint(resolve_base_model(str(other))) != fingerprint(resolve_base_model(str(tiny_file)))


def test_preflight_does_not_download(tmp_path, isolated_cache):
    models = tmp_path / "MyDrive" / "Loras" / "_models"
    r = resolve_base_model("SDXL base 1.0", models_dir=models, download=False)  # offline in tests
    assert (r.source, r.present, r.kind) == ("download", False, "single_file")
    assert r.path == models / "sd_xl_base_1.0.safetensors" and not r.path.exists()
    assert r.sha256 == PRESETS["SDXL base 1.0"].sha256 and r.notes
    local = resolve_base_model("pony", models_dir=models, keep_on_drive=False, download=False)
    assert local.path == isolated_cache / "models" / "ponyDiffusionV6XL_v6StartWithThisOne.safetensors"
    with pytest.raises(ColabkitError, match="offline"):
        resolve_base_model("SDXL base 1.0", models_dir=models)  # would need a download


def test_urls_are_checked_before_any_download():
    with pytest.raises(ColabkitError, match="Civitai model page"):
        resolve_base_model("https://civitai.com/models/257749/pony-diffusion-v6-xl", download=False)
    with pytest.raises(ColabkitError, match="folder page"):
        resolve_base_model("https://huggingface.co/a/b/tree/main", download=False)
    with pytest.raises(ColabkitError, match="not an http"):
        resolve_base_model("ftp://example.com/model.safetensors", download=False)
    r = resolve_base_model("https://huggingface.co/a/b/blob/main/model.safetensors", download=False)
    assert r.url == "https://huggingface.co/a/b/resolve/main/model.safetensors" and r.name == "model.safetensors"
    civitai = resolve_base_model("https://civitai.com/api/download/models/290640?token=SECRET", download=False)
    assert civitai.name.startswith("download-") and "SECRET" not in civitai.url and "***" in civitai.url


# -- downloads from a local server ----------------------------------------------------------------------------------

class _Server:
    """Serves one payload with Range support; can ignore Range, refuse, or drop the connection once."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.requests: list[dict] = []
        self.ignore_range = False
        self.status = 200
        self.drop_after: int | None = None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool):
                outer.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                if outer.status != 200:
                    self.send_response(outer.status)
                    self.end_headers()
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and not outer.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                data = outer.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if body:
                    if outer.drop_after is not None:
                        cut, outer.drop_after = outer.drop_after, None
                        self.wfile.write(data[:cut])
                        self.wfile.flush()
                        self.connection.shutdown(2)  # the connection drops mid-file
                        return
                    self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tiny_file, monkeypatch, isolated_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)  # retries without waiting
    s = _Server(tiny_file.read_bytes())
    yield s
    s.close()


def test_url_download_verifies_and_keeps_on_drive(server, tiny_file, tmp_path, monkeypatch, isolated_cache):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    models = tmp_path / "_models"
    # The preflight's HEAD request sees the size: 6.5 MB cannot be an SDXL checkpoint.
    with pytest.raises(ColabkitError, match=r"answers with only [0-9,]+ bytes"):
        resolve_base_model(server.url("model.safetensors"), models_dir=models, download=False)
    assert server.requests[-1]["path"] == "/model.safetensors"
    r = resolve_base_model(server.url("model.safetensors"), models_dir=models, progress=False)
    local = isolated_cache / "models" / "model.safetensors"
    assert (r.source, r.kind, r.path) == ("download", "single_file", local)  # loading reads the fast local disk
    kept = models / "model.safetensors"
    assert r.path.read_bytes() == kept.read_bytes() == tiny_file.read_bytes()
    assert not local.with_name("model.safetensors.part").exists() and not list(models.glob("*.part"))
    sha = hashlib.sha256(tiny_file.read_bytes()).hexdigest()
    assert dl.verified_sha256(local) == dl.verified_sha256(kept) == sha and fingerprint(r) == f"sha256:{sha}"
    assert all("authorization" not in q for q in server.requests)  # the HF token goes to huggingface.co only
    n = len(server.requests)
    again = resolve_base_model(server.url("model.safetensors"), models_dir=models)
    assert (again.source, again.path) == ("cache", local) and len(server.requests) == n
    local.unlink()  # the next day: a fresh runtime, only Drive has it
    next_day = resolve_base_model(server.url("model.safetensors"), models_dir=models)
    assert (next_day.source, next_day.path) == ("cache", kept) and len(server.requests) == n
    assert fingerprint(next_day) == fingerprint(r)


def test_without_keep_on_drive_nothing_goes_to_drive(server, tmp_path, isolated_cache):
    models = tmp_path / "_models"
    r = resolve_base_model(server.url("m.safetensors"), models_dir=models, keep_on_drive=False, progress=False)
    assert r.path == isolated_cache / "models" / "m.safetensors" and not models.exists()


def test_download_resumes_a_part_file(server, tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    dest = tmp_path / "m.safetensors"
    dest.with_name("m.safetensors.part").write_bytes(data[:12345])
    sha = hashlib.sha256(data).hexdigest()
    dl.download(server.url("m.safetensors"), dest, size=len(data), sha256=sha, progress=False)
    assert dest.read_bytes() == data
    assert server.requests[-1]["range"] == "bytes=12345-"


def test_download_survives_a_dropped_connection(server, tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    server.drop_after = 100_000
    calls = []
    dest = dl.download(server.url("x.safetensors"), tmp_path / "x.safetensors",
                       sha256=hashlib.sha256(data).hexdigest(), progress=lambda done, total: calls.append(done))
    assert dest.read_bytes() == data and calls[-1] == len(data)
    assert len(server.requests) == 2 and server.requests[1]["range"].startswith("bytes=")


def test_server_ignoring_range_restarts_cleanly(server, tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    server.ignore_range = True
    dest = tmp_path / "m.safetensors"
    dest.with_name("m.safetensors.part").write_bytes(data[:5000])
    dl.download(server.url("m"), dest, sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert dest.read_bytes() == data


def test_bad_downloads_are_refused(server, tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    dest = tmp_path / "m.safetensors"
    with pytest.raises(ColabkitError, match="damaged"):
        dl.download(server.url("m"), dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not dest.with_name("m.safetensors.part").exists()
    with pytest.raises(ColabkitError, match="not the expected"):
        dl.download(server.url("m"), dest, size=len(data) + 1, progress=False)
    assert not dest.exists()
    server.status = 401
    with pytest.raises(ColabkitError, match="refused") as e:
        dl.download(server.url("m?token=SECRET123"), dest, progress=False)
    assert "SECRET123" not in str(e.value) and "token=***" in str(e.value)
    server.status = 404
    with pytest.raises(ColabkitError, match="404"):
        resolve_base_model(server.url("gone.safetensors"), models_dir=tmp_path, download=False)


def test_a_downloaded_non_sdxl_is_refused_by_name(server, tmp_path):
    server.payload = write_sd15_like(tmp_path / "src.safetensors").read_bytes()
    with pytest.raises(ColabkitError, match="Stable Diffusion 1.x"):
        resolve_base_model(server.url("v1-5.safetensors"), models_dir=tmp_path / "m", progress=False)


def test_existing_preset_file_is_checked_not_redownloaded(tmp_path, tiny_file, isolated_cache, monkeypatch):
    # A file under the preset's name but of the wrong size: said plainly (and nothing is downloaded).
    models = tmp_path / "_models"
    models.mkdir()
    (models / "sd_xl_base_1.0.safetensors").write_bytes(tiny_file.read_bytes())
    with pytest.raises(ColabkitError, match="should have 6,938,078,334"):
        resolve_base_model("SDXL base 1.0", models_dir=models, download=False)


def test_redact():
    assert dl.redact("https://civitai.com/api/download/models/1?type=Model&token=abc") == \
        "https://civitai.com/api/download/models/1?type=Model&token=***"
    assert dl.redact("https://huggingface.co/a/b/resolve/main/c.safetensors") == \
        "https://huggingface.co/a/b/resolve/main/c.safetensors"


def test_auth_headers_only_for_their_hosts(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.setenv("CIVITAI_TOKEN", "cv_y")
    assert dl._auth_header("huggingface.co") == {"Authorization": "Bearer hf_x"}
    assert dl._auth_header("civitai.com") == {"Authorization": "Bearer cv_y"}
    assert dl._auth_header("cdn-lfs.huggingface.co.evil.example") == {}
    assert dl._auth_header("127.0.0.1") == {}


def test_unused_path_helper_stays_importable():
    assert Path(dl.cache_dir()).name  # COLABKIT_CACHE or ~/.cache/colabkit

"""Download tokens from Colab's Secrets (a stand-in google.colab.userdata), and the NoobAI presets in the preflight."""

import sys
import types
import urllib.error

import pytest

from colabkit.train.models import download as dl


class SecretNotFoundError(Exception):
    pass


class NotebookAccessError(Exception):
    pass


@pytest.fixture
def userdata(monkeypatch):
    """google.colab.userdata as Colab has it: get(name) returns the secret, or raises for one not set / not granted."""
    secrets, denied, asked = {}, set(), []

    def get(name):
        asked.append(name)
        if name in denied:
            raise NotebookAccessError(name)
        if name not in secrets:
            raise SecretNotFoundError(name)
        return secrets[name]

    mod = types.ModuleType("google.colab.userdata")
    mod.get, mod.SecretNotFoundError, mod.NotebookAccessError = get, SecretNotFoundError, NotebookAccessError
    colab = types.ModuleType("google.colab")
    colab.userdata = mod
    google = types.ModuleType("google")
    google.colab = colab
    for name, m in (("google", google), ("google.colab", colab), ("google.colab.userdata", mod)):
        monkeypatch.setitem(sys.modules, name, m)
    for var in dl.HF_TOKEN_NAMES + dl.CIVITAI_TOKEN_NAMES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dl, "_secret_notes", {})
    return types.SimpleNamespace(secrets=secrets, denied=denied, asked=asked)


def test_tokens_come_from_colab_secrets_for_their_own_host_only(userdata, capsys):
    userdata.secrets.update(HF_TOKEN="hf_from_secrets", CIVITAI_TOKEN="civ_from_secrets")
    assert dl._auth_header("huggingface.co") == {"Authorization": "Bearer hf_from_secrets"}
    assert dl._auth_header("civitai.com") == {"Authorization": "Bearer civ_from_secrets"}
    userdata.asked.clear()
    assert dl._auth_header("cdn.example.com") == {} and userdata.asked == []  # other hosts: not even asked
    out = capsys.readouterr()
    assert "from_secrets" not in out.out + out.err


def test_the_environment_comes_first(userdata, monkeypatch):
    userdata.secrets["HF_TOKEN"] = "hf_from_secrets"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert dl._auth_header("huggingface.co") == {"Authorization": "Bearer hf_from_env"} and userdata.asked == []


def test_a_secret_not_granted_is_said_when_the_download_is_refused(userdata):
    userdata.denied.add("CIVITAI_TOKEN")
    assert dl._auth_header("civitai.com") == {}
    err = dl._http_error("https://civitai.com/api/download/models/1?token=abc",
                         urllib.error.HTTPError("u", 401, "no", {}, None))
    text = str(err)
    assert "switch on 'Notebook access' beside CIVITAI_TOKEN" in text and "abc" not in text
    # no secret at all: the usual advice, without the access note
    userdata.denied.clear()
    dl._secret_notes.clear()
    assert dl._auth_header("civitai.com") == {}
    assert "Notebook access" not in str(dl._http_error("https://civitai.com/x", urllib.error.HTTPError(
        "u", 401, "no", {}, None)))


def test_outside_colab_only_the_environment(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import fails, as off Colab
    for var in dl.HF_TOKEN_NAMES:
        monkeypatch.delenv(var, raising=False)
    assert dl._auth_header("huggingface.co") == {}


@pytest.mark.parametrize("preset, prediction", [("NoobAI-XL V-Pred 1.0", "v_prediction"),
                                                ("NoobAI-XL Eps 1.1", "epsilon")])
def test_noobai_presets_in_the_preflight(tiny_project, make_config, preset, prediction, tmp_path, monkeypatch):
    from colabkit.train.plan import make_plan

    monkeypatch.setenv("COLABKIT_CACHE", str(tmp_path / "cache"))
    plan = make_plan(make_config(base_model=preset, resolution=1024), device="cpu")
    row = next(n for n in plan.notes if n.name == "base model")
    assert row.level == "ok" and row.message.startswith(preset) and "not hash-checked" in row.message
    assert plan.prediction_type == prediction and plan.resolved.url.startswith("https://huggingface.co/Laxhar/")

"""What a saved state carries for an exact resume besides the weights: the caption token length the run's
conditioning used, whether its forward process ran in fp32, the skipped-step count; and what a state saved
before those were recorded is read as (the behaviour that run started with)."""

import json

import pytest

from colabkit import files
from colabkit.train.state import StateStore, TrainState


def _save(tmp_path, **kw):
    store = StateStore(tmp_path / "state")
    folder = store.save(TrainState(step=3, config={"max_token_length": 225}, fingerprints={}, total_steps=8,
                                   losses=[0.5, float("nan"), 0.4], cpu_threads=2, **kw))
    return store, folder


def _rewrite_meta(folder, change):
    """Edit state.json as an older colabkit wrote it, manifest included (the state stays intact)."""
    meta = json.loads((folder / "state.json").read_text())
    change(meta)
    (folder / "state.json").write_text(json.dumps(meta))
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    manifest["state.json"] = files.sha256_file(folder / "state.json")
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))


def test_the_new_fields_round_trip(tmp_path):
    store, _ = _save(tmp_path, token_length=150, forward_fp32=True, skipped_steps=4)
    state = store.load_latest()[0]
    assert (state.token_length, state.forward_fp32, state.skipped_steps) == (150, True, 4)
    assert state.losses[0] == 0.5 and state.losses[1] != state.losses[1]  # a skipped step's NaN survives JSON


@pytest.mark.parametrize("keys_then, token_length", [
    # before captions were padded to need (no cpu_threads either): padded to max_token_length
    (("token_length", "forward_fp32", "skipped_steps", "cpu_threads"), 225),
    # after that change, before the length was recorded: the rule of the day (None: computed as now)
    (("token_length", "forward_fp32", "skipped_steps"), None),
])
def test_a_state_saved_before_reads_as_the_behaviour_it_started_with(tmp_path, keys_then, token_length):
    store, folder = _save(tmp_path, token_length=75, forward_fp32=True, skipped_steps=1)
    _rewrite_meta(folder, lambda meta: [meta.pop(k) for k in keys_then])
    state, warnings = store.load_latest()
    assert not warnings and state.step == 3
    assert state.token_length == token_length
    assert state.forward_fp32 is False  # its forward process ran in the weight dtype: it goes on that way
    assert state.skipped_steps == 0


def test_a_legacy_state_without_max_token_length_was_cut_at_75(tmp_path):
    store, folder = _save(tmp_path)
    _rewrite_meta(folder, lambda meta: [meta.pop(k) for k in ("token_length", "cpu_threads")] and
                  meta["config"].pop("max_token_length"))
    assert store.load_latest()[0].token_length == 75


@pytest.mark.slow
def test_a_resume_keeps_the_token_length_its_run_started_with(stopped_project, make_config, monkeypatch):
    from colabkit.train import loop

    store = StateStore(stopped_project.state)
    folder = store.latest_folder()
    assert store.load_latest()[0].token_length == 75  # the captions need one chunk: recorded
    _rewrite_meta(folder, lambda meta: meta.update(token_length=150))  # as if the run had started with two
    lengths, said = [], []
    real = loop.encode_prompts  # shuffle_tags (the default): captions are encoded at every step

    def spy(*args, **kwargs):
        lengths.append(kwargs["max_token_length"])
        return real(*args, **kwargs)

    class Rep(loop.Reporter):
        def stage(self, text):
            said.append(text)

    monkeypatch.setattr(loop, "encode_prompts", spy)
    result = loop.train(make_config(epochs=3), reporter=Rep(), device="cpu")
    assert result.status == "finished"
    assert lengths and set(lengths) == {150}
    assert "Captions are padded to 150 tokens, as this run did when it started." in said
    assert StateStore(stopped_project.state).load_latest()[0].token_length == 150

"""colabkit.files, the one writer to Drive: whole files or the old one, readable modes, no name ever overwritten."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat

import pytest

from colabkit import files
from colabkit.errors import ColabkitError


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_are_whole_readable_and_leave_nothing_behind(tmp_path):
    target = tmp_path / "deep" / "er" / "notes.txt"  # missing folders are made
    assert files.write_text(target, "héllo\n") == target
    assert target.read_bytes() == "héllo\n".encode("utf-8")
    assert files.write_bytes(target, b"\x00\x01") == target and target.read_bytes() == b"\x00\x01"
    old = os.umask(0o022)
    try:
        files.write_text(target, "again")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's 0600: other tools can read it
    assert leftovers(target.parent) == []
    path = files.write_json(tmp_path / "c.json", {"b": 1, "a": [1, 2], "when": tmp_path})
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1, "when": str(tmp_path)}, indent=2, sort_keys=True) + "\n"


def test_the_umask_is_read_without_changing_it():
    old = os.umask(0o027)
    try:
        assert files.current_umask() == 0o027
        assert files.current_umask() == 0o027  # still the same after reading it
    finally:
        os.umask(old)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux only")
def test_on_linux_the_umask_is_read_from_proc_without_setting_it(monkeypatch):
    """Setting the umask to read it is a race: a file another thread creates meanwhile gets the wrong mode."""
    real = os.umask(0o022)
    os.umask(real)

    def no_umask(mask):
        raise AssertionError("os.umask called")

    monkeypatch.setattr(files.os, "umask", no_umask)
    assert files.current_umask() == real


def test_the_umask_without_proc(monkeypatch):
    """Where /proc is missing (macOS, some sandboxes) the umask is read by setting it and setting it straight back."""
    import pathlib

    real = pathlib.Path.read_text

    def no_proc(self, *a, **k):
        if str(self).startswith("/proc"):
            raise FileNotFoundError(str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "read_text", no_proc)
    old = os.umask(0o077)
    try:
        assert files.current_umask() == 0o077
        assert os.umask(0o077) == 0o077  # and it is still what it was
    finally:
        os.umask(old)


def test_safetensors_are_written_whole_with_their_metadata(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    target = tmp_path / "lora.safetensors"
    tensors = {"a": torch.arange(6, dtype=torch.float16).reshape(2, 3), "b": torch.ones(1)}
    assert files.save_safetensors(target, tensors, {"ss_x": "1"}) == target
    loaded = load_file(target)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with safe_open(target, "pt") as f:
        assert f.metadata() == {"ss_x": "1"}
    assert leftovers(tmp_path) == []


def test_a_write_that_fails_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    target = tmp_path / "keep.txt"
    files.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("cut off")
    assert target.read_text() == "old" and leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]  # nothing else either

    def no_space(*a, **k):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(files.os, "replace", no_space)
    with pytest.raises(ColabkitError) as e:
        files.write_text(target, "new")
    assert str(e.value) == (f"No space left while writing keep.txt in {tmp_path} (Disk quota exceeded). The previous "
                            "version of the file is intact. Free some space on Google Drive (empty Drive's bin too), "
                            "then run the cell again.")
    monkeypatch.undo()
    assert target.read_text() == "old" and leftovers(tmp_path) == []

    def other(*a, **k):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.os, "replace", other)
    with pytest.raises(PermissionError):  # not every OSError is "disk full"
        files.write_text(target, "new")


def test_a_mount_that_refuses_chmod_or_directory_fsync_still_gets_the_file(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(files.os, "chmod", refuse)
    files.write_text(tmp_path / "a.txt", "a")
    assert (tmp_path / "a.txt").read_text() == "a"
    real_fsync = os.fsync
    synced = []

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")  # Drive's FUSE on a folder
        synced.append(fd)
        return real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    files.write_text(tmp_path / "b.txt", "b")
    assert (tmp_path / "b.txt").read_text() == "b" and synced  # the file itself was synced
    files.fsync_dir(tmp_path / "missing")  # a folder that is not there: nothing to do, no error


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_replace, real_fsync_dir = os.replace, files.fsync_dir
    monkeypatch.setattr(files.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b)))
    monkeypatch.setattr(files, "fsync_dir", lambda p: (events.append(("fsync_dir", p)), real_fsync_dir(p)))
    files.write_text(tmp_path / "x.txt", "x")
    assert events == ["replace", ("fsync_dir", tmp_path)]


def test_sha256_of_a_file_read_in_chunks(tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / "f").write_bytes(data)
    assert files.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert files.sha256_file(tmp_path / "f", chunk=7) == hashlib.sha256(data).hexdigest()
    (tmp_path / "e").write_bytes(b"")
    assert files.sha256_file(tmp_path / "e") == hashlib.sha256(b"").hexdigest()


def test_move_into_never_overwrites(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        (src / "a.png").write_text(str(i))
        moved = files.move_into(src / "a.png", tmp_path / "out" / "sub")
        assert moved == tmp_path / "out" / "sub" / ("a.png" if i == 0 else f"a ({i + 1}).png")
    (src / "b.png").write_text("b")
    assert files.move_into(src / "b.png", tmp_path / "out" / "sub", "a.png").name == "a (4).png"
    sub = tmp_path / "out" / "sub"
    assert {p.name: p.read_text() for p in sub.iterdir()} == {"a.png": "0", "a (2).png": "1", "a (3).png": "2",
                                                             "a (4).png": "b"}
    assert list(src.iterdir()) == []
    (src / "c").write_text("c")
    assert files.move_into(src / "c", tmp_path / "out", "dir/c.txt").name == "c.txt"  # a name, not a path

import errno
import os

import numpy as np
import pytest

from helpers.disk import small_disk
from srlane.fileio import (DiskFullError, atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text,
                           line_fields)


def test_target_appears_only_complete(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with atomic_path(target) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)  # same folder: os.replace stays atomic
        with open(tmp, "w") as f:
            f.write("first half ")
            f.flush()
            assert target.read_text() == "old\n"
            f.write("second half\n")
        assert target.read_text() == "old\n"
    assert target.read_text() == "first half second half\n"
    assert os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_exception_keeps_old_file_and_removes_temp(tmp_path, error):
    target = tmp_path / "model.pth"
    target.write_bytes(b"old")
    with pytest.raises(error):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise error("interrupted")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.pth"]


def test_exception_before_the_temp_exists(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "never.txt"):
            raise RuntimeError("writer failed before writing")
    assert os.listdir(tmp_path) == []


def test_writer_that_writes_nothing_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "empty.txt"):
            pass
    assert os.listdir(tmp_path) == []


def test_new_folders_are_created(tmp_path):
    target = tmp_path / "a" / "b" / "c.lines.txt"
    atomic_write_text(target, "1.0 2.0\n")
    assert target.read_text() == "1.0 2.0\n"
    atomic_write_bytes(tmp_path / "d" / "e.bin", b"\x00\xff")
    assert (tmp_path / "d" / "e.bin").read_bytes() == b"\x00\xff"


def test_suffix_ends_the_temp_name(tmp_path):
    with atomic_path(tmp_path / "pic.png", suffix=".png") as tmp:
        assert tmp.endswith(".png") and os.path.basename(tmp).startswith(".")
        with open(tmp, "wb") as f:
            f.write(b"x")
    assert (tmp_path / "pic.png").read_bytes() == b"x"


def test_text_is_utf8_and_overwrites(tmp_path):
    target = tmp_path / "t.txt"
    atomic_write_text(target, "long old content\n")
    atomic_write_text(target, "Straße\n")
    assert target.read_bytes() == "Straße\n".encode("utf-8")


def test_permissions_follow_the_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    atomic_write_text(tmp_path / "cfg.py", "a = 1\n")
    assert os.stat(tmp_path / "cfg.py").st_mode & 0o777 == 0o666 & ~umask


def test_long_names_fit(tmp_path):
    name = "x" * 250 + ".txt"
    atomic_write_text(tmp_path / name, "ok")
    assert (tmp_path / name).read_text() == "ok"


def test_line_fields_numbers_lines_and_skips_blank_ones(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("/a/b.jpg 1 0\n\n   \n  c.jpg\t2 \nstraße.jpg\n", encoding="utf-8")
    assert list(line_fields(path)) == [(1, ["/a/b.jpg", "1", "0"]), (4, ["c.jpg", "2"]), (5, ["straße.jpg"])]


def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_stays(tmp_path):
    target = tmp_path / "preds" / "a.lines.txt"
    atomic_write_text(target, "old\n")
    with pytest.raises(DiskFullError) as err:
        with atomic_path(target) as tmp:
            open(tmp, "w").close()
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write on a full disk
    message = str(err.value)
    assert message.startswith(f"cannot write {target}: no space left on device (") and "\n" not in message
    assert " bytes free in " in message and err.value.errno == errno.ENOSPC
    assert target.read_text() == "old\n" and os.listdir(target.parent) == ["a.lines.txt"]
    with pytest.raises(OSError) as other:  # other errors pass unchanged
        with atomic_path(target):
            raise OSError(errno.EACCES, "Permission denied")
    assert not isinstance(other.value, DiskFullError)


def test_a_real_full_disk(tmp_path):
    disk = tmp_path / "disk"
    with small_disk(disk, 64 * 1024):
        atomic_write_bytes(disk / "raw" / "outputs.npy", b"x" * 1000)
        with pytest.raises(DiskFullError, match=rf"^cannot write {disk / 'raw' / 'outputs.npy'}: no space left"):
            atomic_write_bytes(disk / "raw" / "outputs.npy", b"y" * (128 * 1024))
        assert (disk / "raw" / "outputs.npy").read_bytes() == b"x" * 1000
        assert os.listdir(disk / "raw") == ["outputs.npy"]


def test_atomic_write_json_round_trips_indented_and_takes_dumps_options(tmp_path):
    import json

    path = tmp_path / "out" / "value.json"
    atomic_write_json(path, {"a": [1, 2.5], "b": None})
    assert json.loads(path.read_text()) == {"a": [1, 2.5], "b": None}
    assert path.read_text().startswith('{\n "a"') and path.read_text().endswith("}\n")
    atomic_write_json(path, {"x": np.float32(0.5)}, default=float)  # replaced whole
    assert json.loads(path.read_text()) == {"x": 0.5} and sorted(p.name for p in path.parent.iterdir()) == ["value.json"]

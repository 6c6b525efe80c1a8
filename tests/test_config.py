import textwrap

import pytest

from srlane.config import Config, merge


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_base_files_merge_deeply_and_relative_to_the_file(tmp_path):
    (tmp_path / "base").mkdir()
    write(tmp_path / "base" / "a.py", """
        model = dict(depth=18, neck=dict(out=64))
        lr = 0.1
    """)
    cfg_path = write(tmp_path / "exp.py", """
        _base_ = ["base/a.py"]
        model = dict(neck=dict(out=32))
        batch_size = 4
    """)
    cfg = Config.fromfile(cfg_path)
    assert cfg.model.depth == 18
    assert cfg.model.neck.out == 32
    assert cfg.lr == 0.1 and cfg.batch_size == 4
    assert "_base_" not in cfg


def test_merge_replaces_non_dicts_and_keeps_inputs():
    base = {"a": {"b": [1, 2]}, "c": 1}
    out = merge(base, {"a": {"b": [3]}})
    assert out == {"a": {"b": [3]}, "c": 1}
    assert base == {"a": {"b": [1, 2]}, "c": 1}


def test_missing_key_attribute_error_names_key():
    with pytest.raises(AttributeError, match="nope"):
        Config(a=1).nope

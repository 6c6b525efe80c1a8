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


def test_parse_override_literals_and_strings():
    from srlane.config import parse_override

    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("lr=6e-4") == ("lr", 6e-4)
    assert parse_override("size=(4, 10)") == ("size", (4, 10))
    assert parse_override("name=culane") == ("name", "culane")
    assert parse_override("flag=None") == ("flag", None)
    with pytest.raises(ValueError, match="key=value"):
        parse_override("novalue")


def test_overrides_set_nested_keys_without_touching_the_input():
    from srlane.config import apply_overrides

    cfg = Config(optimizer=dict(type="AdamW", lr=0.1), total_iter=10)
    out = apply_overrides(cfg, ["optimizer.lr=0.5", "total_iter=20"])
    assert out.optimizer.lr == 0.5 and out.optimizer.type == "AdamW" and out.total_iter == 20
    assert cfg.optimizer.lr == 0.1
    with pytest.raises(ValueError, match="'total_iter' holds 10, not a dict"):
        apply_overrides(cfg, ["total_iter.x=1"])


def test_validate_names_unknown_key_and_suggests_closest():
    from srlane.config import ConfigError, validate

    schema = {"total_iter": 10, "model": {"neck": {"out_channels": 64}}}
    with pytest.raises(ConfigError, match=r"unknown config key 'total_itre'; did you mean 'total_iter'\?"):
        validate({"total_itre": 5}, schema)
    with pytest.raises(ConfigError, match=r"'model.neck.out_chanels'; did you mean 'model.neck.out_channels'"):
        validate({"model": {"neck": {"out_chanels": 3}}}, schema)
    with pytest.raises(ConfigError, match="'total_iter' should be an int like 10, got str 'many'"):
        validate({"total_iter": "many"}, schema)
    validate({"total_iter": 3, "model": {"neck": {"out_channels": 8}}}, schema)


def test_validate_type_rules():
    from srlane.config import ConfigError, validate

    schema = {"lr": 0.1, "flag": False, "size": (1, 2), "anything": None, "opt": {"type": "SGD"}}
    validate({"lr": 1, "flag": True, "size": [3, 4], "anything": "x", "opt": None}, schema)
    validate({"opt": {"type": "SGD", "momentum": 0.9}}, schema, open_keys=["opt"])
    with pytest.raises(ConfigError, match="'flag' should be a bool"):
        validate({"flag": 1}, schema)
    with pytest.raises(ConfigError, match="unknown config key 'opt.momentum'"):
        validate({"opt": {"momentum": 0.9}}, schema)


def test_load_config_defaults_bases_overrides_and_errors(tmp_path):
    from srlane.config import ConfigError, load_config

    write(tmp_path / "model.py", "model = dict(depth=18)\nimg_w = 800\n")
    exp = write(tmp_path / "exp.py", '_base_ = "model.py"\nimg_w = 256\n')
    defaults = {"total_iter": 100, "optimizer": {"type": "AdamW", "lr": 6e-4}}
    cfg = load_config(exp, ["total_iter=7", "optimizer.betas=(0.8, 0.9)"], defaults, open_keys=["optimizer"])
    assert cfg.total_iter == 7 and cfg.img_w == 256 and cfg.model.depth == 18
    assert cfg.optimizer.to_dict() == {"type": "AdamW", "lr": 6e-4, "betas": (0.8, 0.9)}
    bad = write(tmp_path / "bad.py", '_base_ = "model.py"\ntotal_iters = 5\n')
    with pytest.raises(ConfigError, match=r"bad.py: unknown config key 'total_iters'; did you mean 'total_iter'"):
        load_config(bad, [], defaults)
    with pytest.raises(ConfigError, match=r"--set: unknown config key 'img_ww'; did you mean 'img_w'"):
        load_config(exp, ["img_ww=3"], defaults)


def test_dump_round_trips(tmp_path):
    cfg = Config(a=1, b=dict(c=(1, 2), d=[0.5, None], e="x"), f=True)
    cfg.dump(tmp_path / "out" / "config.py")
    back = Config.fromfile(tmp_path / "out" / "config.py")
    assert back.to_dict() == cfg.to_dict()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["config.py"]


def test_project_experiment_configs_validate():
    import pathlib

    from srlane.engine.defaults import load_experiment

    root = pathlib.Path(__file__).resolve().parents[1] / "configs"
    for name in ("srlane_r18_culane.py", "srlane_r18_tusimple.py", "srlane_r18_synthetic.py"):
        cfg = load_experiment(root / name)
        assert cfg.img_w % 32 == 0 and cfg.img_h % 32 == 0
    culane = load_experiment(root / "srlane_r18_culane.py")
    assert culane.optimizer.to_dict() == {"type": "AdamW", "lr": 6e-4, "fused": True}  # the release's, one kernel a step
    assert (culane.total_iter, culane.batch_size, culane.eval_ep, culane.log_interval) == (44440, 40, 3, 500)
    assert (culane.precision, culane.strategy, culane.workers, culane.seed) == ("16-mixed", "dp", 8, 0)
    assert culane.scheduler.warmup_iter == 800

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlane.config import ConfigError  # noqa: E402
from tools import speed  # noqa: E402

CONFIG = str(ROOT / "configs" / "srlane_r18_synthetic.py")
TINY = ["--iters", "2", "--warmup", "1", "--release-iters", "2", "--release-warmup", "1", "--threads", "1"]


def test_speed_reports_forward_and_decoding_of_max_lanes(tmp_path, capsys):
    out = tmp_path / "new" / "speed.json"
    result = speed.main([CONFIG, *TINY, "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["forward_ms"] > 0 and result["decode_ms"] > 0
    assert result["end_to_end_ms"] >= result["decode_ms"]
    assert result["fps"] == 1000 / result["end_to_end_ms"]
    assert result["fold_bn"] in (False, True) and result["channels_last"] in (False, True)  # "auto", as settled
    table = capsys.readouterr().out
    assert "crafted proposals, 4 lanes per image" in table and "forward ms/batch" in table


def test_release_protocol_beside_ours_with_the_chosen_options(tmp_path, capsys):
    """The release's protocol (batch 1, mean of --release-iters calls) and ours (median at --batch),
    both with the options of the flags; the JSON names them."""
    out = tmp_path / "speed.json"
    result = speed.main([CONFIG, *TINY, "--batch", "2", "--fold-bn", "--channels-last", "--precision", "bf16",
                         "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["release_protocol"] == {"batch": 1, "img_w": 384, "img_h": 160, "warmup": 1, "iters": 2,
                                          "statistic": "mean",
                                          "synchronised": "once before and once after the timed calls"}
    assert result["release_forward_fps"] == 1000 / result["release_forward_ms_mean"]
    assert result["batch"] == 2 and result["forward_fps"] == 2000 / result["forward_ms"]
    assert {k: result[k] for k in ("precision", "fold_bn", "channels_last", "compile")} == {
        "precision": "bf16", "fold_bn": True, "channels_last": True, "compile": "none"}
    table = capsys.readouterr().out
    assert "release protocol: forward FPS (bs1, bf16, 1 warm-up, 2 calls, mean)" in table
    assert "precision bf16, fold_bn True, channels_last True, compile none" in table


def test_cuda_only_options_on_cpu_are_one_line():
    with pytest.raises(ConfigError, match=r"^inference.compile 'cudagraph' needs a CUDA device, got cpu$"):
        speed.main([CONFIG, *TINY, "--compile", "cudagraph"])


def test_set_overrides_the_config(capsys):
    result = speed.main([CONFIG, *TINY, "--set", "img_w=160", "img_h=64", "test_parameters.nms_topk=3"])
    assert (result["release_protocol"]["img_w"], result["release_protocol"]["img_h"]) == (160, 64)
    assert "crafted proposals, 3 lanes per image" in capsys.readouterr().out

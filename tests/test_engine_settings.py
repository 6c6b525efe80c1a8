"""Device settings and inference options are checked on every machine, before anything is built."""
import subprocess
import sys
from pathlib import Path

import pytest

from srlane.config import ConfigError, check_choice
from srlane.engine.defaults import load_experiment
from srlane.engine.fabric import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "srlane_r18_synthetic.py"


def test_check_choice_names_the_allowed_values_and_the_closest():
    check_choice("precision", "16-mixed", ("32-true", "16-mixed"))
    with pytest.raises(ConfigError) as err:
        check_choice("precision", "64-mixed", ("32-true", "16-mixed", "bf16-mixed"))
    assert str(err.value) == "precision must be one of 32-true, 16-mixed, bf16-mixed, got '64-mixed'; closest: '16-mixed'"
    with pytest.raises(ConfigError, match="fold_bn must be one of False, True, got 1"):
        check_choice("fold_bn", 1, (False, True))  # 1 == True, but not a bool


@pytest.mark.parametrize("key, value, closest", [
    ("precision", "64-mixed", "16-mixed"), ("precision", "bf16", "bf16-mixed"), ("strategy", "ddp_spwn", "ddp"),
    ("accelerator", "gpu", "cpu"), ("matmul_precision", "tf32", "highest"),
    ("inference.precision", "fp64", "fp16"), ("inference.compile", "cudagraphs", "cudagraph"),
])
def test_an_unknown_setting_fails_at_load_on_a_cpu_machine(key, value, closest):
    with pytest.raises(ConfigError) as err:
        load_experiment(QUICKSTART, [f"{key}={value!r}"])
    message = str(err.value)
    allowed = SETTINGS.get(key) or {"inference.precision": ("fp32", "fp16", "bf16"),
                                    "inference.compile": ("none", "compile", "cudagraph")}[key]
    assert message.startswith(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    assert message.endswith(f"closest: {closest!r}")


def test_main_stops_with_one_line_before_building_anything(tmp_path):
    work = tmp_path / "run"
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), str(QUICKSTART), "--work-dir", str(work),
                           "--set", "precision='64-mixed'", "dataset.data_root='/nonexistent'"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: precision must be one of 32-true, 16-mixed, bf16-mixed, got '64-mixed'; closest: '16-mixed'"]
    assert not work.exists()  # no run folder, no model, no data preparation

"""srlane.autotune: the chooser keeps the faster candidate (a fake clock that each candidate
advances by its own cost, so nothing depends on this machine's timing), a forced choice is
taken untimed, choices are cached per machine key, an unreadable cache is one warning line; the
suite's cache is its own (conftest). The options chosen for inference and training are exact
to the float tolerance of tests/test_models_inference_options.py."""
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers.inference import SYNTHETIC, lane_emitting_net, r18_config, trained_like
from srlane import autotune
from srlane.autotune import ChoiceCache, cache_path, choose, machine_key
from srlane.config import ConfigError
from srlane.engine.defaults import load_experiment
from srlane.engine.memory_format import FORMATS, training_memory_format
from srlane.models.inference import InferenceOptions, prepare_for_inference

ROOT = Path(__file__).resolve().parents[1]


class FakeTimer:
    """A clock that only the candidates move: running ``candidate(name)`` costs ``costs[name]``
    ms; ``runs`` counts the calls of each."""

    def __init__(self, costs: dict[str, list[float]]) -> None:
        self.now, self.costs, self.runs = 0.0, costs, {name: 0 for name in costs}

    def clock(self) -> float:
        return self.now

    def candidates(self) -> dict:
        def run(name):
            cost = self.costs[name]
            self.now += cost[self.runs[name] % len(cost)] / 1000.0
            self.runs[name] += 1
        return {name: (lambda name=name: run(name)) for name in self.costs}


def test_the_suite_has_its_own_cache():
    assert cache_path().parent == type(cache_path())(os.environ["SRLANE_CACHE_DIR"])
    assert not str(cache_path()).startswith(os.path.expanduser("~/.cache"))


def test_cache_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SRLANE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_path() == tmp_path / "srlane" / "autotune.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_path() == tmp_path / "home" / ".cache" / "srlane" / "autotune.json"


def test_picks_the_faster_candidate_by_its_median(tmp_path):
    # "a" has one slow outlier (50 ms) but a median of 10 ms; "b" is a steady 12 ms
    timer = FakeTimer({"a": [10.0, 50.0, 10.0, 10.0], "b": [12.0]})
    lines = []
    cache = ChoiceCache(tmp_path / "c.json")
    assert choose("op", timer.candidates(), "k1", cache, lines.append, repeats=3, clock=timer.clock) == "a"
    assert timer.runs == {"a": 4, "b": 4}  # one warm-up and three timed runs each
    assert lines == [f"autotune op: chose a (a 10.0 ms, b 12.0 ms; measured, saved in {tmp_path / 'c.json'})"]
    timer = FakeTimer({"a": [20.0], "b": [12.0]})
    assert choose("op", timer.candidates(), "k2", cache, lines.append, clock=timer.clock) == "b"


def test_a_forced_choice_is_taken_without_timing(tmp_path):
    timer = FakeTimer({"a": [10.0], "b": [12.0]})
    lines = []
    cache = ChoiceCache(tmp_path / "c.json")
    assert choose("op", timer.candidates(), "k", cache, lines.append, forced="b", clock=timer.clock) == "b"
    assert timer.runs == {"a": 0, "b": 0} and lines == ["autotune op: b (forced)"]
    assert not (tmp_path / "c.json").exists()
    with pytest.raises(ValueError, match="forced choice 'c' is not one of a, b"):
        choose("op", timer.candidates(), "k", cache, lines.append, forced="c")


def test_choices_are_cached_by_machine_key(tmp_path):
    path = tmp_path / "c.json"
    timer = FakeTimer({"a": [10.0], "b": [12.0]})
    lines = []
    choose("op", timer.candidates(), "k1", ChoiceCache(path), lines.append, clock=timer.clock)
    assert json.loads(path.read_text()) == {"k1": {"choice": "a", "ms": {"a": 10.0, "b": 12.0}}}
    # a fresh process (a new ChoiceCache) with the same key: nothing timed, the cached choice even
    # though the candidates now cost otherwise
    timer = FakeTimer({"a": [30.0], "b": [12.0]})
    assert choose("op", timer.candidates(), "k1", ChoiceCache(path), lines.append, clock=timer.clock) == "a"
    assert timer.runs == {"a": 0, "b": 0}
    assert lines[-1] == f"autotune op: chose a (a 10.0 ms, b 12.0 ms; cached in {path})"
    # another key is measured again, and both are kept
    assert choose("op", timer.candidates(), "k2", ChoiceCache(path), lines.append, clock=timer.clock) == "b"
    assert timer.runs == {"a": 4, "b": 4}
    assert set(json.loads(path.read_text())) == {"k1", "k2"}


def test_a_cached_choice_that_is_no_candidate_is_measured_again(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"k": {"choice": "gone", "ms": {"gone": 1.0}}}))
    timer = FakeTimer({"a": [10.0], "b": [12.0]})
    assert choose("op", timer.candidates(), "k", ChoiceCache(path), print, clock=timer.clock) == "a"
    assert timer.runs["a"] == 4


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_an_unreadable_cache_is_one_warning_and_measured_again(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    warnings, lines = [], []
    timer = FakeTimer({"a": [10.0], "b": [12.0]})
    assert choose("op", timer.candidates(), "k", ChoiceCache(path, warn=warnings.append), lines.append,
                  clock=timer.clock) == "a"
    assert len(warnings) == 1 and warnings[0].startswith(f"autotune: ignoring the unreadable cache {path} (")
    assert "\n" not in warnings[0] and timer.runs == {"a": 4, "b": 4}
    assert json.loads(path.read_text())["k"]["choice"] == "a"  # replaced by a good one


CONTENDER = """
import sys
from srlane.autotune import ChoiceCache, choose
ran = []
candidates = {name: (lambda name=name: ran.append(name)) for name in ("a", "b")}
print("ready", flush=True)
print(choose("op", candidates, sys.argv[1], ChoiceCache(), lambda line: None), len(ran), flush=True)
"""


def test_a_process_that_comes_while_another_measures_waits_and_takes_its_choice(tmp_path):
    """The suite's cache (its folder in the environment) is the one a test's subprocesses use;
    a second process asking for a key while the first holds the lock (measuring) blocks, then
    reads the first one's choice instead of measuring its own: one choice per key."""
    key = f"contended-{tmp_path.name}"
    cache = ChoiceCache()
    with cache.locked():
        contender = subprocess.Popen([sys.executable, "-c", CONTENDER, key], cwd=ROOT, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert contender.stdout.readline() == "ready\n"
            time.sleep(1.0)  # unlocked, it would have measured its fake candidates and exited by now
            assert contender.poll() is None
            agreed = cache.put(key, "b", {"a": 3.0, "b": 2.0})
        except BaseException:
            contender.kill()
            raise
    out, _ = contender.communicate(timeout=60)
    assert agreed == {"choice": "b", "ms": {"a": 3.0, "b": 2.0}}
    assert out.split() == ["b", "0"]  # the first process's choice, nothing of its own measured
    assert json.loads(cache_path().read_text())[key] == agreed


def test_machine_key_changes_with_what_makes_a_measurement(monkeypatch):
    base = machine_key("op", "cpu", [(1, 3, 64, 160)])
    assert base == machine_key("op", "cpu", [(1, 3, 64, 160)])
    assert base != machine_key("op", "cpu", [(1, 3, 64, 192)])
    assert base != machine_key("other", "cpu", [(1, 3, 64, 160)])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert base != machine_key("op", "cpu", [(1, 3, 64, 160)])
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(autotune, "_cpu_description", lambda: "Other CPU | avx512f")
    assert base != machine_key("op", "cpu", [(1, 3, 64, 160)])
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert machine_key("op", "cpu", [(1, 3, 64, 160)]) not in (base,)


def test_the_cpu_description_names_model_and_flags():
    text = autotune._cpu_description()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith(("model name", "Features")))
        assert text.startswith(model)
    assert text


@pytest.fixture(scope="module")
def network():
    cfg = r18_config()
    net = trained_like(lane_emitting_net(cfg))
    img = torch.randint(0, 256, (2, 3, cfg.img_h, cfg.img_w), generator=torch.Generator().manual_seed(3),
                        dtype=torch.uint8)
    with torch.no_grad():
        ref = net(img)
    return cfg, net, img, ref


def _matches(model, options):
    """The settled copy is made as ``options`` say."""
    inner = model.model.net
    folded = not any(isinstance(m, nn.BatchNorm2d) for m in inner.modules())
    nhwc = inner.backbone.model.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    return folded == options.fold_bn and nhwc == options.channels_last


def test_auto_inference_runs_a_measured_choice_equal_to_eager_fp32(network):
    """The default options settle at the first call on a combination of fold_bn and
    channels_last, measured once and then cached; outputs equal the eager network's within the
    tolerance of fold_bn/channels_last (1e-5)."""
    _, net, img, ref = network
    lines = []
    model = prepare_for_inference(net, InferenceOptions(), "cpu", log=lines.append)
    out = model(img)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    chosen = model.options
    assert chosen.fold_bn in (False, True) and chosen.channels_last in (False, True) and _matches(model, chosen)
    name = f"fold_bn={chosen.fold_bn},channels_last={chosen.channels_last}"
    assert len(lines) == 1 and lines[0].startswith(f"autotune inference: chose {name} (")
    assert lines[0].count(" ms") == 4
    again = prepare_for_inference(net, InferenceOptions(), "cpu", log=lines.append)
    torch.testing.assert_close(again(img), ref, atol=1e-5, rtol=0)
    assert again.options == chosen and "; cached in " in lines[1]
    later = copy_with_moved_weights(net)
    again.load_weights(later)
    with torch.no_grad():
        torch.testing.assert_close(again(img), later(img), atol=1e-5, rtol=0)


def copy_with_moved_weights(net):
    later = copy.deepcopy(net)
    with torch.no_grad():
        for param in later.parameters():
            param.mul_(1.01)
    return later


def test_a_forced_inference_option_stays_and_the_other_is_measured(network):
    _, net, img, ref = network
    lines = []
    model = prepare_for_inference(net, InferenceOptions(fold_bn=True), "cpu", log=lines.append)
    torch.testing.assert_close(model(img), ref, atol=1e-5, rtol=0)
    assert model.options.fold_bn is True and _matches(model, model.options)
    assert lines[0].count(" ms") == 2 and "channels_last=" in lines[0] and "fold_bn=" not in lines[0]
    forced = prepare_for_inference(net, InferenceOptions(fold_bn=False, channels_last=False), "cpu")
    assert forced.options == InferenceOptions(fold_bn=False, channels_last=False)
    assert torch.equal(forced(img), ref)  # nothing folded, nothing reordered: the eager network itself


def test_training_memory_format_measured_once_forced_untimed(network):
    cfg, net, _, _ = network
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    lines = []
    size = (int(cfg.img_h), int(cfg.img_w))
    chosen = training_memory_format("auto", net, size, torch.device("cpu"), lines.append)
    assert chosen in FORMATS and lines[0].startswith(f"autotune training memory format: chose {chosen} (")
    assert "measured" in lines[0]
    assert training_memory_format("auto", net, size, torch.device("cpu"), lines.append) == chosen
    assert "; cached in " in lines[1]
    assert training_memory_format(True, net, size, torch.device("cpu"), lines.append) == "channels_last"
    assert training_memory_format(False, net, size, torch.device("cpu"), lines.append) == "contiguous"
    assert lines[2:] == ["autotune training memory format: channels_last (forced)",
                         "autotune training memory format: contiguous (forced)"]
    assert torch.equal(torch.get_rng_state(), rng)  # the run's random stream untouched
    state = net.state_dict()
    assert all(torch.equal(state[k], before[k]) for k in state) and all(p.grad is None for p in net.parameters())
    with pytest.raises(ConfigError, match="channels_last must be one of False, True, auto, got 'yes'"):
        training_memory_format("yes", net, size, torch.device("cpu"), lines.append)


@pytest.mark.parametrize("value, message", [
    ("True", None), ("False", None), ('"auto"', None),
    ('"yes"', "channels_last must be one of False, True, auto, got 'yes'; closest: 'auto'"),
    ("1", "config key 'channels_last' should be a str like 'auto', got int 1"),
])
def test_the_config_takes_a_forced_or_measured_training_memory_format(tmp_path, value, message):
    config = tmp_path / "exp.py"
    config.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\nchannels_last = {value}\n"
                      "inference = dict(fold_bn=True, channels_last='auto')\n")
    if message is None:
        cfg = load_experiment(config)
        assert cfg.channels_last == eval(value) and cfg.inference.fold_bn is True
    else:
        with pytest.raises(ConfigError) as err:
            load_experiment(config)
        assert str(err.value).endswith(message)

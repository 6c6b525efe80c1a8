"""The result files beside the checkpoints: results.json, best.json and latest.json agree with
each other, with the checkpoints and with log.txt; a resumed run keeps the validations up to its
step; --validate-only writes its own results.json."""
import json
import re

import pytest

import main
from helpers.engine import experiment  # noqa: F401 (the fixture: a tiny synthetic set, trained 4 steps on CPU)
from helpers.engine import PLATEAU, Interrupt, add_record, scripted_runner
from srlane.benchmarks.base import headline_counts
from srlane.models.weights import load_checkpoint

THRESHOLDS = dict(conf_threshold=0.4, nms_thres=50, nms_topk=4)


def read(path):
    return json.loads(path.read_text())


def logged_validations(log: str) -> list[tuple[int, float]]:
    """(step, metric) of every validation table in log.txt (its ``metric: <repr>`` line)."""
    return [(int(step), float(metric)) for step, metric in
            re.findall(r"validation at step (\d+):\n(?:  .*\n)*?  metric\s+(\S+)", log)]


def test_result_files_agree_with_each_other_the_checkpoints_and_the_log(tmp_path):
    runner = scripted_runner(tmp_path, PLATEAU, total_iter=10, test_parameters=THRESHOLDS)
    record = add_record(runner)
    runner.train()
    run = tmp_path / "run"
    validations = read(run / "results.json")["validations"]
    assert [(v["step"], v["epoch"], v["metric"], v["best"]) for v in validations] == record.validations
    assert [v["metric"] for v in validations] == [0.1, 0.3, 0.2, 0.3, 0.25]  # best at step 4
    assert all(v["thresholds"] == THRESHOLDS and v["metrics"] == {"metric": v["metric"], "count": 8}
               for v in validations)
    assert [v["wall_time"] for v in validations] == sorted(v["wall_time"] for v in validations)
    log = (run / "log.txt").read_text()
    assert logged_validations(log) == [(v["step"], v["metric"]) for v in validations]

    best, latest = read(run / "best.json"), read(run / "latest.json")
    assert best == {**validations[1], "checkpoint": str(run / "best.pth")}
    assert latest == {**validations[-1], "checkpoint": str(run / "last.pth")}
    best_pth, last_pth = load_checkpoint(run / "best.pth"), load_checkpoint(run / "last.pth")
    assert (best_pth["step"], best_pth["metrics"]["metric"]) == (best["step"], best["metric"]) == (4, 0.3)
    assert (last_pth["step"], last_pth["metrics"]["metric"]) == (latest["step"], latest["metric"]) == (10, 0.25)
    assert "new best metric 0.3000 at step 4" in log


def test_a_resumed_run_keeps_the_validations_up_to_its_step(tmp_path):
    """The crash after step 7 follows the validation at step 6; last.pth holds step 4, written
    before that epoch's validation, so the resumed run validates at 4 and 6 again: results.json has
    each validation once, as the uninterrupted run."""
    with pytest.raises(RuntimeError):
        scripted_runner(tmp_path, PLATEAU, name="cut", hooks=[Interrupt(7, "crash")], total_iter=10,
                        save_interval=4).train()
    cut = tmp_path / "cut"
    assert [v["step"] for v in read(cut / "results.json")["validations"]] == [2, 4, 6]
    scripted_runner(tmp_path, PLATEAU, name="cut", total_iter=10, save_interval=4, resume=str(cut / "last.pth")).train()
    scripted_runner(tmp_path, PLATEAU, name="full", total_iter=10, save_interval=4).train()
    resumed, full = read(cut / "results.json")["validations"], read(tmp_path / "full" / "results.json")["validations"]
    keys = ("step", "epoch", "metric", "best", "metrics")
    assert [[v[k] for k in keys] for v in resumed] == [[v[k] for k in keys] for v in full]
    assert read(cut / "best.json")["step"] == 4 == load_checkpoint(cut / "best.pth")["step"]


def test_validate_only_writes_its_own_results_json(experiment, tmp_path):
    """The real metric: per category at IoU 0.5, as the training run's result files hold it."""
    full = experiment / "full"
    trained = read(full / "results.json")["validations"]
    assert [v["step"] for v in trained] == [4] and read(full / "best.json")["step"] == 4
    metrics = main.main([str(experiment / "exp.py"), "--validate-only", "--load-from", str(full / "best.pth"),
                         "--work-dir", str(tmp_path / "eval")])
    (entry,) = read(tmp_path / "eval" / "results.json")["validations"]
    assert entry["metrics"] == metrics == trained[0]["metrics"] == load_checkpoint(full / "best.pth")["metrics"]
    assert (entry["step"], entry["epoch"], entry["checkpoint"]) == (None, None, str(full / "best.pth"))
    assert entry["thresholds"] == dict(conf_threshold=0.0, nms_thres=50, nms_topk=4)
    assert set(entry["categories"]) == set(metrics["categories"]) and "normal" in entry["categories"]
    for name, counts in entry["categories"].items():
        assert counts == headline_counts(metrics["categories"][name])
    assert entry["categories"] == trained[0]["categories"]
    assert not (tmp_path / "eval" / "best.json").exists()  # no training, no best

"""The evaluation report (srlane.report, tools/report.py, main.py --validate-only --report, the
TensorBoard report at each validation) on one small trained checkpoint and its synthetic test
split: the page's numbers are the metric's, every picture it shows exists, it fetches nothing,
and a headless Chromium opens it without a console error."""
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import main
from srlane.report.curves import last_validation, log_curves, training_curves
from tools import redecode, report

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """The tables (id -> rows of cell texts), the picture sources, the metric span and every
    attribute value of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.tags: set[str] = set()
        self.attributes: list[str] = []
        self.metric = ""
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_metric = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.attributes += [v for v in attrs.values() if v]
        if tag == "table":
            self._table = attrs.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "span" and attrs.get("id") == "metric":
            self._in_metric = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "span":
            self._in_metric = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_metric:
            self.metric += data


@pytest.fixture(scope="module")
def reported(road):
    """The session's ``road``, then ``main.py --validate-only --report`` of its best checkpoint."""
    folder, config, checkpoint, test_list = road
    metrics = main.main([str(config), "--validate-only", "--report", "--load-from", str(checkpoint),
                         "--work-dir", str(folder / "validate")])
    return folder, config, metrics


def page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def percent(f1) -> str:
    return "-" if f1 is None else f"{100 * f1:.2f}"


def ratio(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def assert_table_is_the_metric(html: Page, metrics: dict) -> None:
    """Each row of the page's metric table (every category, then the total) holds that entry's
    F1 (%), precision, recall, TP, FP and FN; the metric is printed in full."""
    header, *rows = html.tables["metrics"]
    assert header == ["category", "F1 (%)", "precision", "recall", "TP", "FP", "FN"]
    entries = [*metrics["categories"].items(), ("total", metrics)]
    assert [row[0] for row in rows] == [name for name, _ in entries]
    for row, (name, entry) in zip(rows, entries):
        counts = entry["0.5"]
        expected = ["-" if name == "cross" else percent(counts["f1"]), ratio(counts["precision"]),
                    ratio(counts["recall"]), str(counts["tp"]), str(counts["fp"]), str(counts["fn"])]
        assert row[1:] == expected, name
    assert float(html.metric) == metrics["metric"]


def test_validate_only_report_table_equals_the_metric(reported):
    folder, _, metrics = reported
    assert metrics["0.5"]["tp"] + metrics["0.5"]["fp"] > 0  # lanes were predicted and scored
    html = page(folder / "validate" / "report" / "report.html")
    assert_table_is_the_metric(html, metrics)
    assert json.loads((folder / "validate" / "report" / "report.json").read_text())["metrics"] == metrics


def test_every_picture_exists_and_nothing_is_fetched(reported):
    folder, *_ = reported
    out = folder / "validate" / "report"
    html = page(out / "report.html")
    numbers = json.loads((out / "report.json").read_text())
    assert {"threshold_curve.png", "iou_curve.png", "training_curves.png"} <= set(html.images)
    assert [e["file"] for e in numbers["gallery"]] == [i for i in html.images if i.startswith("gallery/")]
    assert numbers["gallery"]  # a 4-step network makes errors to show
    for src in html.images:
        assert (out / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    text = (out / "report.html").read_text()
    assert not {"script", "link", "iframe", "object"} & html.tags
    assert "://" not in text and not any(v.startswith("//") for v in html.attributes)


def test_threshold_and_iou_curves_are_the_redecoded_metrics(reported, tmp_path):
    """The threshold curve's points are what tools/redecode.py scores at those thresholds (0.0,
    the config's, is validation's metric); the IoU curve's 0.5 is the metric's F1 and its true
    positives only fall as the IoU threshold rises."""
    folder, config, metrics = reported
    out = tmp_path / "report"
    report.main([str(folder / "pred"), "--out", str(out), "--run", str(folder / "run"),
                 "--conf-thresholds", "0.0", "0.3", "0.6"])
    numbers = json.loads((out / "report.json").read_text())
    assert_table_is_the_metric(page(out / "report.html"), metrics)
    redecoded = redecode.main([str(folder / "pred" / "raw"), "--split", "test", "--conf-threshold", "0.0", "0.3",
                               "0.6"])
    curve = numbers["threshold_curve"]
    assert [p["conf_threshold"] for p in curve] == [0.0, 0.3, 0.6]
    assert curve[0]["metric"] == metrics["metric"]
    for point, entry in zip(curve, redecoded):
        assert point["metric"] == entry["metrics"]["metric"] and point["lanes"] == entry["lanes"]
        assert point["precision"] == entry["metrics"]["0.5"]["precision"]
        assert point["recall"] == entry["metrics"]["0.5"]["recall"]
    iou = {p["iou"]: p for p in numbers["iou_curve"]}
    assert sorted(iou) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert {k: iou[0.5][k] for k in ("tp", "fp", "fn", "f1")} == {k: metrics["0.5"][k] for k in ("tp", "fp", "fn", "f1")}
    tps = [iou[t]["tp"] for t in sorted(iou)]
    assert tps == sorted(tps, reverse=True)
    assert all(iou[t]["tp"] + iou[t]["fp"] == metrics["0.5"]["tp"] + metrics["0.5"]["fp"] for t in iou)


def test_gallery_counts_are_each_images_lanes(reported):
    """Each gallery image's TP + FP is the number of lanes predicted for it (its prediction
    file's lines), TP + FN its annotated lanes; they come worst first."""
    folder, *_ = reported
    numbers = json.loads((folder / "validate" / "report" / "report.json").read_text())
    data = folder / "data"
    errors = []
    for entry in numbers["gallery"]:
        stem = entry["image"].rsplit(".", 1)[0]
        predicted = (folder / "pred" / f"{stem}.lines.txt").read_text().splitlines()
        annotated = (data / f"{stem}.lines.txt").read_text().splitlines()
        assert entry["tp"] + entry["fp"] == len([line for line in predicted if line.strip()]), stem
        assert entry["tp"] + entry["fn"] == len([line for line in annotated if line.strip()]), stem
        errors.append(entry["fp"] + entry["fn"])
    assert errors == sorted(errors, reverse=True) and errors[-1] > 0


def test_run_folder_report_shows_the_last_validation_and_the_curves(reported, tmp_path):
    """Without raw outputs, the table is the run's last validation (its TensorBoard scalars): the
    training validated the same weights validate-only scored."""
    folder, _, metrics = reported
    run = folder / "run"
    report.main([str(run), "--out", str(tmp_path / "run_report")])
    html = page(tmp_path / "run_report" / "report.html")
    assert_table_is_the_metric(html, metrics)
    assert html.images == ["training_curves.png"]
    curves = training_curves(str(run))
    assert curves["train/lr"][0] == [2, 4] and curves["val/metric"] == ([4], [metrics["metric"]])
    assert log_curves(str(run / "log.txt"))["train/lr"][0] == [2, 4]


def test_results_json_is_read_as_a_list_or_a_dict(tmp_path):
    validations = [{"step": 10, "epoch": 1, "metric": 0.25, "0.5": {"f1": 0.25}},
                   {"step": 20, "epoch": 2, "metrics": {"metric": 0.5, "0.5": {"f1": 0.5}}}]
    for content in (validations, {"validations": validations}):
        (tmp_path / "results.json").write_text(json.dumps(content))
        assert training_curves(str(tmp_path))["val/metric"] == ([10, 20], [0.25, 0.5])
        assert last_validation(str(tmp_path), {}) == (20, {"metric": 0.5, "0.5": {"f1": 0.5}})
    (tmp_path / "results.json").write_text("{not json")
    assert last_validation(str(tmp_path), {}) is None and training_curves(str(tmp_path)) == {}


def test_log_lines_give_the_training_curves(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("2026-01-01 00:00:00 work dir: x\n"
                   "2026-01-01 00:00:01 epoch: 0 step: 50 lr: 0.000500 loss: 3.5000 cls_loss: 1.2500 data: 0.1s "
                   "batch: 0.5s eta: 0:01:00\n"
                   "2026-01-01 00:00:02 epoch: 1 step: 100 lr: 0.001000 loss: 2.0000 cls_loss: 0.7500 data: 0.1s "
                   "batch: 0.5s eta: 0:00:00 nonfinite: 1\n")
    assert log_curves(str(log)) == {"train/lr": ([50, 100], [0.0005, 0.001]), "train/loss": ([50, 100], [3.5, 2.0]),
                                    "train/cls_loss": ([50, 100], [1.25, 0.75])}


def test_a_folder_without_outputs_or_run_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "report.py"), str(tmp_path), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path} has no raw outputs (index.json, raw/index.json) and is no run folder "
        "(log.txt, tensorboard, results.json)"]


def test_training_with_report_tensorboard_writes_the_curve_and_gallery(reported, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, config, _ = reported
    main.main([str(config), "--work-dir", str(tmp_path / "run"), "--set", "report.tensorboard=True",
               "total_iter=2", "save_interval=2", "report.thresholds=[0.0, 0.5]", "report.gallery=2"])
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    images = events.Tags()["images"]
    assert {"report/threshold_curve", "report/gallery/0", "report/gallery/1"} <= set(images)
    assert [e.step for e in events.Images("report/threshold_curve")] == [2]
    at_zero = events.Scalars("report/metric_at_conf/0")[0].value
    assert at_zero == pytest.approx(events.Scalars("val/metric")[0].value)  # 0.0 is the config's threshold


def chromium_console(page_path: Path, screenshot: Path) -> list[str]:
    """The console lines headless Chromium logs while it opens ``page_path`` and saves a
    ``screenshot``."""
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--window-size=1200,2400", f"--screenshot={screenshot}",
                           page_path.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert screenshot.is_file(), done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_console_check_sees_a_script_error(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><script>throw Error('deliberate')</script></body></html>")
    console = chromium_console(broken, tmp_path / "broken.png")
    assert any("deliberate" in line for line in console), console


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_chromium_opens_the_report_without_console_errors(reported, tmp_path):
    folder, *_ = reported
    screenshot = tmp_path / "report.png"
    assert chromium_console(folder / "validate" / "report" / "report.html", screenshot) == []
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000


@pytest.mark.parametrize("setting, line", [
    ("report.thresholds=[0.2, 1.5]", "report.thresholds [0.2, 1.5]: expected a list of confidence thresholds in [0, 1]"),
    ("report.gallery=-1", "report.gallery -1: expected the number of gallery images (an integer >= 0)"),
    ("loggers=['csv']", "report.tensorboard=True writes to TensorBoard, but loggers is ['csv']; add 'tensorboard' to "
                        "loggers")])
def test_bad_report_settings_are_one_line(reported, tmp_path, setting, line):
    folder, config, _ = reported
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), str(config), "--work-dir", str(tmp_path / "run"),
                           "--set", "report.tensorboard=True", setting], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == f"error: {line}", done.stderr[-2000:]

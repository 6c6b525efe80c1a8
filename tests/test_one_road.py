"""The road from image to lanes is one: validation, predict.py + evaluate.py, redecode.py of the
raw outputs, predict.py --onnx and embed.py agree on one small trained checkpoint and one
synthetic test split (CULane layout, its nine category lists)."""
import json
from pathlib import Path

import numpy as np
import torch

import main
from srlane.engine.defaults import load_experiment
from srlane.inference.raw import load_raw
from srlane.models.decode import build_decoder
from helpers.road import N_TEST
from tools import embed, evaluate, export, predict, redecode



def lines_files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.lines.txt"))}


def points(text: str) -> list[np.ndarray]:
    return [np.array(line.split(), dtype=np.float64).reshape(-1, 2) for line in text.splitlines()]


def test_validation_equals_evaluate_of_the_prediction_files(road, tmp_path):
    folder, config, checkpoint, test_list = road
    metrics = main.main([str(config), "--validate-only", "--load-from", str(checkpoint),
                         "--work-dir", str(tmp_path / "validate")])
    data = folder / "data"
    scored = evaluate.main(["culane", "--anno-dir", str(data), "--pred-dir", str(folder / "pred"),
                            "--list", str(test_list), "--categories", str(data / "list" / "test_split"),
                            "--json", str(tmp_path / "scores.json")])
    written = json.loads((tmp_path / "scores.json").read_text())
    assert metrics["0.5"]["tp"] + metrics["0.5"]["fp"] > 0  # lanes were predicted and scored
    for result in (scored, written):
        assert {k: result["0.5"][k] for k in ("tp", "fp", "fn")} == {k: metrics["0.5"][k] for k in ("tp", "fp", "fn")}
        assert result["0.5"]["f1"] == metrics["metric"]
        for name, block in result["categories"].items():
            assert block["0.5"]["f1"] == metrics["categories"][name]["0.5"]["f1"]


def test_redecode_of_the_raw_outputs_writes_identical_files(road, tmp_path):
    folder, *_ = road
    redecode.main([str(folder / "pred" / "raw"), "--out", str(tmp_path / "again"), "--format", "culane"])
    original = lines_files(folder / "pred")
    assert len(original) == N_TEST and any(original.values())
    assert lines_files(tmp_path / "again") == original


def test_onnx_prediction_matches_within_a_hundredth_of_a_pixel(road, tmp_path):
    folder, config, checkpoint, test_list = road
    export.main([str(config), "--load-from", str(checkpoint), "--out", str(tmp_path / "model.onnx")])
    predict.main([str(config), str(test_list), "--root", str(folder / "data"), "--onnx", str(tmp_path / "model.onnx"),
                  "--out", str(tmp_path / "onnx"), "--batch", "4", "--workers", "0"])
    original, onnx = lines_files(folder / "pred"), lines_files(tmp_path / "onnx")
    assert onnx.keys() == original.keys()
    for name, text in original.items():
        ours, theirs = points(text), points(onnx[name])
        assert [len(p) for p in theirs] == [len(p) for p in ours], name
        for a, b in zip(ours, theirs):
            assert np.abs(a - b).max() <= 0.01, name


def test_embed_features_belong_to_exactly_the_predicted_lanes(road, tmp_path):
    """Each lane row of embed.py names the proposal that predict.py's lane of the same image and
    rank came from: decoding predict.py's raw output of that image gives those proposals."""
    folder, config, checkpoint, _ = road
    embed.main([str(config), "--load-from", str(checkpoint), "--split", "test", "--out", str(tmp_path / "embed"),
                "--workers", "0", "--accelerator", "cpu"])
    index = json.loads((tmp_path / "embed" / "index.json").read_text())
    lanes = np.load(tmp_path / "embed" / "lanes.npy")
    outputs, raw_index = load_raw(str(folder / "pred" / "raw"))
    decoder = build_decoder(load_experiment(config))
    rows = {row["name"]: i for i, row in enumerate(raw_index["rows"])}
    written = lines_files(folder / "pred")
    assert len(lanes) == len(index["lane_rows"]["proposal"]) == sum(len(points(t)) for t in written.values())
    columns = index["lane_rows"]
    for image, name in enumerate(index["images"]):
        i = rows[name]
        row = raw_index["rows"][i]
        decoded = decoder.decode(torch.from_numpy(outputs[i:i + 1]), [(row["crop"], row["size"][0])])[0]
        mine = [p for img, p in zip(columns["image"], columns["proposal"]) if img == image]
        assert mine == [proposal for _, proposal in decoded], name
        assert len(mine) == len(points(written[name.lstrip("/").rsplit(".", 1)[0] + ".lines.txt"])), name

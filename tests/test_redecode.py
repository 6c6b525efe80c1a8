"""tools/redecode.py: raw outputs saved by predict.py --save-raw, decoded and scored again
without the network (random-init network on a tiny generated CULane set, CPU, seconds)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import main as main_cli  # noqa: E402
from helpers.inference import SYNTHETIC, lane_emitting_net  # noqa: E402
from srlane.benchmarks import build_benchmark  # noqa: E402
from srlane.data.dataset import build_dataset  # noqa: E402
from srlane.data.loader import make_loader  # noqa: E402
from srlane.engine.defaults import load_experiment  # noqa: E402
from srlane.inference.raw import RawError  # noqa: E402
from srlane.models.decode import LaneDecoder, build_decoder  # noqa: E402
from srlane.models.inference import InferenceOptions, build_inference_options, prepare_for_inference  # noqa: E402
from srlane.synthetic import generate  # noqa: E402
from tools import predict, redecode  # noqa: E402


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory):
    """A 256x96 config over a generated CULane set (6 test images), a random-init checkpoint
    whose proposals span the image, and predict.py --save-raw over list/test.txt."""
    tmp = tmp_path_factory.mktemp("redecode")
    generate(tmp / "data", "culane", 2, 6, seed=0, progress=False)
    config = tmp / "tiny.py"
    config.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\nimg_w = 256\nimg_h = 96\nbatch_size = 4\nworkers = 0\n"
                      "accelerator = 'cpu'\ntest_parameters = dict(conf_threshold=0.3)\n"
                      f"dataset = dict(data_root={str(tmp / 'data')!r}, cache_dir={str(tmp / 'cache')!r}, "
                      "generate=None)\n")
    cfg = load_experiment(config)
    net = lane_emitting_net(cfg)
    torch.save({"net": net.state_dict()}, tmp / "net.pth")
    predict.main([str(config), str(tmp / "data" / "list" / "test.txt"), "--root", str(tmp / "data"), "--load-from",
                  str(tmp / "net.pth"), "--out", str(tmp / "pred"), "--save-raw", "--batch", "4", "--workers", "0",
                  "--device", "cpu"])
    return tmp, config, cfg, net


def direct_outputs(cfg, net, options=None):
    """Validation's way: the split's dataset in batches of batch_size, the network prepared with
    the config's inference options (their "auto" choice the one predict.py measured and cached
    for this machine and shape), or with ``options``."""
    benchmark = build_benchmark(cfg)
    records = benchmark.read_split("test", False)
    loader = make_loader(build_dataset(cfg, records, training=False), cfg.batch_size, 0, training=False)
    model = prepare_for_inference(net, options or build_inference_options(cfg), "cpu")
    outputs, crops = [], []
    with torch.no_grad():
        for batch in loader:
            outputs.append(model(batch["img"]))
            crops.append([(meta["cut_height"], meta["img_size"][0]) for meta in batch["meta"]])
    return benchmark, records, outputs, crops


def decoded(decoder, outputs, crops):
    return [lanes for out, crop in zip(outputs, crops) for lanes in decoder(out, crop)]


def test_config_thresholds_reproduce_the_validation_metric_exactly(raw_run, tmp_path):
    tmp, config, cfg, net = raw_run
    results = redecode.main([str(tmp / "pred" / "raw"), "--split", "test", "--json", str(tmp_path / "r.json")])
    assert len(results) == 1
    entry = results[0]
    assert (entry["conf_threshold"], entry["nms_thres"], entry["nms_topk"]) == (0.3, 50.0, 4)
    # main.py --validate-only on the same checkpoint: the whole metrics dict, exactly
    validated = main_cli.main([str(config), "--validate-only", "--load-from", str(tmp / "net.pth"), "--work-dir",
                               str(tmp_path / "work"), "--accelerator", "cpu"])
    assert entry["metrics"] == validated
    # and the evaluator applied to the decoder's output of the network run directly
    benchmark, records, outputs, crops = direct_outputs(cfg, net)
    assert entry["metrics"] == benchmark.evaluator(records)(decoded(build_decoder(cfg), outputs, crops))
    block = entry["metrics"]["0.5"]
    assert entry["lanes"] > 0 and block["tp"] + block["fp"] == entry["lanes"]  # a non-trivial comparison
    raw = np.load(tmp / "pred" / "raw" / "outputs.npy")
    assert np.array_equal(raw, torch.cat(outputs).numpy())  # the very same floats: one choice per machine
    # and the eager fp32 network's within the tolerance of fold_bn and channels_last
    eager = torch.cat(direct_outputs(cfg, net, InferenceOptions(fold_bn=False, channels_last=False))[2])
    assert np.allclose(raw, eager.numpy(), rtol=0, atol=1e-5)
    assert json.loads((tmp_path / "r.json").read_text())[0]["metrics"] == json.loads(json.dumps(validated))


def test_a_sweep_scores_every_combination_as_a_direct_decode(raw_run, capsys):
    tmp, _, cfg, net = raw_run
    results = redecode.main([str(tmp / "pred" / "raw"), "--split", "test", "--conf-threshold", "0", "0.5", "0.99",
                             "--nms-thres", "50", "15", "--nms-topk", "4"])
    assert [(r["conf_threshold"], r["nms_thres"]) for r in results] == [
        (0.0, 50.0), (0.0, 15.0), (0.5, 50.0), (0.5, 15.0), (0.99, 50.0), (0.99, 15.0)]
    benchmark, records, outputs, crops = direct_outputs(cfg, net)
    evaluate = benchmark.evaluator(records)
    for r in results:
        decoder = build_decoder(cfg, conf_threshold=r["conf_threshold"], nms_thres=r["nms_thres"], top_k=4)
        lanes = decoded(decoder, outputs, crops)
        assert r["metrics"] == evaluate(lanes) and r["lanes"] == sum(map(len, lanes))
    counts = [r["lanes"] for r in results]
    assert counts[0] > counts[4] and counts[0] >= counts[2] >= counts[4]
    out = capsys.readouterr().out
    assert "6 images of split 'test' (culane), 0 other rows not scored" in out and out.count("metric ") == 7
    assert "best: conf_threshold" in out


def test_set_and_flags_decode_as_a_decoder_built_with_those_arguments(raw_run):
    """--set on the config's decoding keys and the flags give the same results, those of a
    LaneDecoder constructed with the values (threshold 0.1, NMS 15 px, 2 lanes at most) on the
    network's outputs."""
    tmp, _, cfg, net = raw_run
    raw = str(tmp / "pred" / "raw")
    by_flags = redecode.main([raw, "--split", "test", "--conf-threshold", "0.1", "--nms-thres", "15", "--nms-topk", "2"])
    by_set = redecode.main([raw, "--split", "test", "--set", "test_parameters.conf_threshold=0.1",
                            "test_parameters.nms_thres=15.0", "test_parameters.nms_topk=2"])
    assert by_flags == by_set and len(by_set) == 1
    benchmark, records, outputs, crops = direct_outputs(cfg, net)
    lanes = decoded(LaneDecoder(cfg.img_w, cfg.num_points, conf_threshold=0.1, nms_thres=15.0, top_k=2), outputs, crops)
    assert max(map(len, lanes)) == 2 and by_set[0]["lanes"] == sum(map(len, lanes))
    assert by_set[0] | {"metrics": None} == {"conf_threshold": 0.1, "nms_thres": 15.0, "nms_topk": 2,
                                             "lanes": sum(map(len, lanes)), "metrics": None}
    assert by_set[0]["metrics"] == benchmark.evaluator(records)(lanes)


def test_out_writes_the_files_predict_wrote(raw_run, tmp_path):
    tmp, _, _, _ = raw_run
    redecode.main([str(tmp / "pred" / "raw"), "--out", str(tmp_path / "out")])
    written = sorted(p.relative_to(tmp / "pred") for p in (tmp / "pred").rglob("*.lines.txt"))
    assert len(written) == 6
    for rel in written:
        assert (tmp_path / "out" / rel).read_text() == (tmp / "pred" / rel).read_text()
    with pytest.raises(RawError, match=r"--out writes the files of one combination; 2 given"):
        redecode.main([str(tmp / "pred" / "raw"), "--out", str(tmp_path / "x"), "--conf-threshold", "0.1", "0.2"])


def test_raw_outputs_of_another_config_are_one_line(raw_run, tmp_path):
    tmp, config, _, _ = raw_run
    other = tmp_path / "wide.py"
    other.write_text(f"_base_ = [{str(config)!r}]\nimg_w = 320\n")
    with pytest.raises(RawError) as err:
        redecode.main([str(tmp / "pred" / "raw"), "--config", str(other), "--split", "test"])
    message = str(err.value)
    assert "\n" not in message and "made with img_w=256, img_h=96, num_points=72" in message
    assert "img_w=320, img_h=96, num_points=72" in message
    result = subprocess.run([sys.executable, "tools/redecode.py", str(tmp / "pred" / "raw"), "--config", str(other),
                             "--split", "test"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.strip() == f"error: {message}"
    # rows of another width (num_points) saved under a config that claims this one's geometry
    fake = tmp_path / "fake"
    fake.mkdir()
    index = json.loads((tmp / "pred" / "raw" / "index.json").read_text())
    np.save(fake / "outputs.npy", np.zeros((6, 40, 40), np.float32))
    (fake / "index.json").write_text(json.dumps({**index, "shape": [40, 40]}))
    with pytest.raises(RawError, match=r"output rows \(40, 40\) .* \(rows of 76\)"):
        redecode.main([str(fake), "--split", "test"])


def test_missing_images_and_broken_folders_are_one_line(raw_run, tmp_path):
    tmp, _, _, _ = raw_run
    index = json.loads((tmp / "pred" / "raw" / "index.json").read_text())
    raw = np.load(tmp / "pred" / "raw" / "outputs.npy")
    part = tmp_path / "part"
    part.mkdir()
    np.save(part / "outputs.npy", raw[1:])
    (part / "index.json").write_text(json.dumps({**index, "rows": index["rows"][1:]}))
    first = index["rows"][0]["name"]
    with pytest.raises(RawError, match=rf"1 of the 6 images of split 'test' have no raw output \(first: "
                                                rf"{first}\)"):
        redecode.main([str(part), "--split", "test"])
    (part / "index.json").write_text(json.dumps(index))  # 6 rows described, 5 saved
    with pytest.raises(RawError, match=r"has 5 rows, .*index.json describes 6"):
        redecode.main([str(part), "--split", "test"])
    with pytest.raises(RawError, match=r"nowhere/outputs.npy not found"):
        redecode.main([str(tmp_path / "nowhere"), "--split", "test"])


def test_raw_outputs_made_from_the_ground_truth_score_high(raw_run, tmp_path):
    """A non-zero metric through the same path: each image's annotation encoded as the network's
    output rows (the training targets, in the decoder's units) is re-decoded with its crop and
    scored against that annotation."""
    from srlane.data.targets import build_target_encoder
    from srlane.data.transforms import resize_lanes

    tmp, _, cfg, _ = raw_run
    records = build_benchmark(cfg).read_split("test", False)
    encoder = build_target_encoder(cfg)
    n_strips = cfg.num_points - 1
    outputs = np.zeros((len(records), 40, 4 + cfg.num_points), np.float32)
    outputs[:, :, 0] = 10.0  # background
    for i, record in enumerate(records):
        lanes = resize_lanes([lane - np.array([0.0, 270.0]) for lane in record.lanes], cfg.img_w / 1640,
                             cfg.img_h / (590 - 270))
        for j, row in enumerate(encoder(lanes)["gt_lane"]):
            if row[1] == 1:  # a lane: score, start and length as fractions, x / img_w
                outputs[i, j, :2] = (0.0, 10.0)
                outputs[i, j, 2:4] = row[2:4] / n_strips
                outputs[i, j, 4:] = row[4:] / cfg.img_w
    index = json.loads((tmp / "pred" / "raw" / "index.json").read_text())
    by_name = {row["name"]: row for row in index["rows"]}
    folder = tmp_path / "gt"
    folder.mkdir()
    np.save(folder / "outputs.npy", outputs)
    (folder / "index.json").write_text(json.dumps({**index, "rows": [by_name[r.img_name] for r in records]}))
    (entry,) = redecode.main([str(folder), "--split", "test", "--nms-thres", "1"])  # keep neighbouring lanes
    lanes = sum(len(r.lanes) for r in records)
    assert lanes > 6 and entry["lanes"] == lanes
    assert entry["metrics"]["metric"] > 0.95 and entry["metrics"]["0.5"]["fp"] == 0

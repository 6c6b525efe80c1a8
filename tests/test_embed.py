"""tools/embed.py on a tiny generated CULane-layout set with a random-init network (CPU, seconds)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.inference import (GEOMETRY_CHANGES, SYNTHETIC, assert_geometry_refused,  # noqa: E402
                               checkpoint_of_other_geometry, exit_status, lane_emitting_net)
from srlane.benchmarks import build_benchmark  # noqa: E402
from srlane.data.dataset import build_dataset  # noqa: E402
from srlane.engine.defaults import load_experiment  # noqa: E402
from srlane.models.decode import build_decoder  # noqa: E402
from srlane.synthetic import generate  # noqa: E402
from tools import embed  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three generated test images, a 256x96 config over them and a random-init checkpoint whose
    proposals span the image height (so lanes decode at threshold 0)."""
    tmp = tmp_path_factory.mktemp("embed")
    generate(tmp / "data", "culane", 4, 3, seed=0, progress=False)
    config = tmp / "tiny.py"
    config.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\nimg_w = 256\nimg_h = 96\n"
                      f"dataset = dict(data_root={str(tmp / 'data')!r}, cache_dir={str(tmp / 'cache')!r})\n")
    cfg = load_experiment(config)
    net = lane_emitting_net(cfg)
    torch.save({"net": net.state_dict()}, tmp / "net.pth")
    return tmp, cfg, net


def run_embed(tmp, out, *extra):
    return embed.main([str(tmp / "tiny.py"), "--load-from", str(tmp / "net.pth"), "--split", "test", "--out", str(out),
                       "--conf-threshold", "0", "--accelerator", "cpu", "--workers", "0", *extra])


def test_rows_match_the_decoded_lanes_and_a_plain_hook(setup):
    tmp, cfg, net = setup
    out = tmp / "out"
    summary = run_embed(tmp, out, "--batch", "2")
    global_features = np.load(out / "global.npy")
    lane_features = np.load(out / "lanes.npy")
    index = json.loads((out / "index.json").read_text())
    records = build_benchmark(cfg).read_split("test", False)
    assert index["images"] == [r.img_name for r in records] and len(records) == 3
    assert global_features.shape == (3, 512) and global_features.dtype == np.float32

    # reference: the whole split in one batch, features from a plain hook on the regression branch
    dataset = build_dataset(cfg, records, training=False)
    items = [dataset[i] for i in range(len(dataset))]
    seen = {}
    stage = net.roi_head.stage_heads[-1]
    handles = [stage.reg_modules.register_forward_hook(lambda m, i, o: seen.update(fc=i[0].clone())),
               net.backbone.register_forward_hook(lambda m, i, o: seen.update(top=o[-1].clone()))]
    try:
        with torch.no_grad():
            output = net(torch.stack([item["img"] for item in items]))
    finally:
        for handle in handles:
            handle.remove()
    decoder = build_decoder(cfg, conf_threshold=0.0)
    lanes = decoder(output, [(item["meta"]["cut_height"], item["meta"]["img_size"][0]) for item in items])
    indices, valid = decoder.select(output)
    scores = torch.softmax(output[..., :2], -1)[..., 1]

    rows = index["lane_rows"]
    counts = [len(image_lanes) for image_lanes in lanes]
    assert sum(counts) > 3 and lane_features.shape == (sum(counts), 192) == (summary["lanes"], 192)
    assert np.bincount(rows["image"], minlength=3).tolist() == counts
    assert index["lanes"]["shape"] == [sum(counts), 192] and index["global"]["shape"] == [3, 512]
    np.testing.assert_allclose(global_features, seen["top"].mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-5)
    for r, (image, lane, proposal, score) in enumerate(zip(rows["image"], rows["lane"], rows["proposal"],
                                                           rows["score"])):
        assert lane == rows["image"][:r].count(image)  # lanes of an image in decoder order
        assert proposal == int(indices[image, lane]) and bool(valid[image, lane])
        np.testing.assert_allclose(lane_features[r], seen["fc"][image, proposal].numpy(), rtol=1e-5, atol=1e-5)
        assert score == pytest.approx(float(scores[image, proposal]), abs=1e-6)


def test_threshold_above_every_score_writes_empty_lanes(setup):
    tmp, _, _ = setup
    out = tmp / "none"
    run_embed(tmp, out, "--conf-threshold", "1.01")
    assert np.load(out / "lanes.npy").shape == (0, 192)
    assert np.load(out / "global.npy").shape == (3, 512)
    assert json.loads((out / "index.json").read_text())["lane_rows"]["image"] == []


def test_bad_split_is_one_error_line(setup):
    tmp, _, _ = setup
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "embed.py"), str(tmp / "tiny.py"), "--load-from",
                             str(tmp / "net.pth"), "--split", "nosuch", "--out", str(tmp / "bad"), "--workers", "0",
                             "--accelerator", "cpu"], capture_output=True, text=True, cwd=tmp)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp / "bad").exists()


def test_unreadable_image_is_reported_and_left_out(setup, capsys):
    tmp, cfg, _ = setup
    data = tmp / "broken"
    shutil.copytree(tmp / "data", data)
    names = [r.img_name for r in build_benchmark(cfg).read_split("test", False)]
    (data / names[1]).write_bytes(b"not an image")
    out = tmp / "out_broken"
    summary = run_embed(tmp, out, "--set", f"dataset.data_root={data}", f"dataset.cache_dir={tmp / 'cache2'}")
    assert summary["unreadable"] == 1 and summary["images"] == 2
    assert json.loads((out / "index.json").read_text())["images"] == [names[0], names[2]]
    assert np.load(out / "global.npy").shape == (2, 512)
    assert f"error: cannot read image {data / names[1]}" in capsys.readouterr().err


def read_embedding(out):
    """global.npy, lanes.npy and index.json of an embed run."""
    return np.load(out / "global.npy"), np.load(out / "lanes.npy"), json.loads((out / "index.json").read_text())


def assert_same_embedding(first, second, tolerance):
    """The same images, lanes and proposals, features and scores within ``tolerance``."""
    (a_global, a_lanes, a_index), (b_global, b_lanes, b_index) = read_embedding(first), read_embedding(second)
    assert a_index["images"] == b_index["images"] and a_lanes.shape == b_lanes.shape and len(a_lanes) > 3
    for column in ("image", "lane", "proposal"):
        assert a_index["lane_rows"][column] == b_index["lane_rows"][column]
    np.testing.assert_allclose(a_index["lane_rows"]["score"], b_index["lane_rows"]["score"], atol=tolerance)
    np.testing.assert_allclose(b_global, a_global, atol=tolerance, rtol=0)
    np.testing.assert_allclose(b_lanes, a_lanes, atol=tolerance, rtol=0)


def test_folded_channels_last_network_gives_the_same_features(setup):
    """The hooks sit on the prepared copy's network: BatchNorm folded and channels-last keep the
    modules they read, the rows agree with the plain network's to float rounding."""
    tmp, _, _ = setup
    run_embed(tmp, tmp / "plain", "--batch", "2")
    run_embed(tmp, tmp / "fast", "--batch", "2", "--fold-bn", "--channels-last")
    assert_same_embedding(tmp / "plain", tmp / "fast", 1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_network_is_tapped_as_the_eager_one(setup):
    """torch.compile traces the forward hooks: the same rows as eager (the slow test of this file:
    the network is compiled first)."""
    tmp, _, _ = setup
    run_embed(tmp, tmp / "eager", "--batch", "3")
    run_embed(tmp, tmp / "compiled", "--batch", "3", "--compile", "compile")
    assert_same_embedding(tmp / "eager", tmp / "compiled", 1e-5)


def test_a_cuda_graph_is_refused_in_one_line(setup, capsys):
    tmp, _, _ = setup
    argv = [str(tmp / "tiny.py"), "--load-from", str(tmp / "net.pth"), "--out", str(tmp / "graph"), "--compile",
            "cudagraph", "--accelerator", "cpu", "--workers", "0"]
    assert exit_status(embed.main, argv, ValueError) == 1
    assert capsys.readouterr().err == ("error: compile 'cudagraph' replays a captured CUDA graph, which runs no forward "
                                       "hooks: features cannot be read from it; use --compile none or compile\n")
    assert not (tmp / "graph").exists()


@pytest.mark.parametrize("change", GEOMETRY_CHANGES)
def test_a_checkpoint_of_another_geometry_is_one_line_naming_both_values(setup, tmp_path, capsys, change):
    tmp, cfg, net = setup
    checkpoint, named = checkpoint_of_other_geometry(tmp_path, net, cfg, change)
    argv = [str(tmp / "tiny.py"), "--load-from", str(checkpoint), "--out", str(tmp_path / "out"), "--accelerator",
            "cpu", "--workers", "0"]
    assert exit_status(embed.main, argv, ValueError) == 1
    assert_geometry_refused(capsys.readouterr().err, checkpoint, named)
    assert not (tmp_path / "out").exists()

"""ONNX export (srlane.models.export, tools/export.py): onnxruntime reproduces the eval-mode network
at any batch, fp16 within its tolerance, and a file of another input size is refused; with the
decoder in the graph the check covers the lanes too (CPU)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.inference import (GEOMETRY_CHANGES, SYNTHETIC, assert_geometry_refused,  # noqa: E402
                               checkpoint_of_other_geometry, exit_status, r18_config, trained_like)
from srlane.config import ConfigError  # noqa: E402
from srlane.engine.defaults import load_experiment  # noqa: E402
from srlane.models import build_net  # noqa: E402
from srlane.models.decode import build_decoder  # noqa: E402
from srlane.models.export import TOLERANCES, OnnxModel, compare_with_torch, export_onnx  # noqa: E402
from tools import export as export_tool  # noqa: E402
from tools import speed  # noqa: E402


def r18(img_h, img_w, seed=0):
    torch.manual_seed(seed)
    return build_net(r18_config(img_w, img_h), pretrained=False).eval()


def cpu_model(path):
    """The suite runs on the CPU, also where onnxruntime-gpu is installed."""
    return OnnxModel(path, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    net = trained_like(r18(64, 160))
    path = tmp_path_factory.mktemp("export") / "small.onnx"
    export_onnx(net, path, 64, 160)
    return net, path


def max_diffs(net, path, batches=(1, 3)):
    return {(b, name): diff for b, name, diff in compare_with_torch(net, cpu_model(path), batches)}


def test_small_model_matches_pytorch_at_batch_1_and_3(small):
    net, path = small
    model = cpu_model(path)
    assert model.input_size == (64, 160)
    out = model(torch.rand(3, 3, 64, 160))
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (3, 40, 76)
    diffs = max_diffs(net, path)
    assert len(diffs) == 6 and max(diffs.values()) <= 1e-4, diffs
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["img"] and [o.name for o in graph.output] == ["predictions"]
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 64, 160]
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == ["batch", 40, 76]
    assert not any(n.op_type == "BatchNormalization" for n in graph.node)  # folded by the exporter


def test_eval_forward_equals_onnx_on_a_given_image(small):
    net, path = small
    img = torch.rand(2, 3, 64, 160, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = net(img)
    torch.testing.assert_close(cpu_model(path)(img), expected, atol=1e-4, rtol=0)


def test_release_size_r18_matches_pytorch(tmp_path):
    net = r18(320, 800)
    export_onnx(net, tmp_path / "r18.onnx", 320, 800)
    diffs = max_diffs(net, tmp_path / "r18.onnx")
    assert max(diffs.values()) <= 1e-4, diffs


def test_other_input_size_is_one_line_value_error(small):
    _, path = small
    model = cpu_model(path)
    model.check_input_size(64, 160)
    with pytest.raises(ValueError) as err:
        model.check_input_size(320, 800)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "160x64" in message and "800x320" in message
    with pytest.raises(ValueError, match="160"):
        model(torch.rand(1, 3, 320, 800))


def test_fp16_within_its_tolerance(small, tmp_path):
    net, _ = small
    export_onnx(net, tmp_path / "half.onnx", 64, 160, fp16=True)
    model = cpu_model(tmp_path / "half.onnx")
    assert model.input_size == (64, 160)
    rows = compare_with_torch(net, model, (1, 3))
    for batch, name, diff in rows:
        assert diff <= TOLERANCES["fp16"][name], (batch, name, diff)
    assert max(diff for _, _, diff in rows) > 1e-6  # it does compute in half precision
    assert (tmp_path / "half.onnx").stat().st_size < 0.6 * (small[1]).stat().st_size
    with torch.no_grad():
        net(torch.rand(1, 3, 64, 160))  # the export left the float32 network as it was
    assert next(net.parameters()).dtype == torch.float32


def test_export_onnx_refuses_an_opset_without_grid_sample(small, tmp_path):
    with pytest.raises(ValueError, match="opset 16"):
        export_onnx(small[0], tmp_path / "old.onnx", 64, 160, opset=15)
    assert not (tmp_path / "old.onnx").exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export_tool")
    (tmp / "tiny.py").write_text(f"_base_ = [{str(SYNTHETIC)!r}]\nimg_w = 160\nimg_h = 64\n")
    torch.save({"net": trained_like(r18(64, 160)).state_dict()}, tmp / "net.pth")
    return tmp


def test_tool_checks_and_writes(checkpoint, capsys):
    tmp = checkpoint
    result = export_tool.main([str(tmp / "tiny.py"), "--load-from", str(tmp / "net.pth"), "--out",
                               str(tmp / "m.onnx"), "--batch", "2"])
    table = capsys.readouterr().out
    assert [b for b, _, _ in result["rows"]] == [1] * 3 + [2] * 3 + [3] * 3
    assert all(diff <= 1e-4 for _, _, diff in result["rows"])
    assert table.count(" ok") == 9 and "FAIL" not in table and "max |diff|" in table
    assert cpu_model(tmp / "m.onnx").input_size == (64, 160)


def test_tool_disagreement_is_one_line_and_writes_nothing(checkpoint, monkeypatch, capsys):
    tmp = checkpoint
    monkeypatch.setitem(TOLERANCES, "fp32", {"logits": -1.0, "start/length": 1.0, "xs": 1.0})
    with pytest.raises(export_tool.ExportCheckError) as err:
        export_tool.main([str(tmp / "tiny.py"), "--load-from", str(tmp / "net.pth"), "--out", str(tmp / "bad.onnx")])
    assert "\n" not in str(err.value) and "batch 1 logits" in str(err.value)
    assert "FAIL" in capsys.readouterr().out
    assert not (tmp / "bad.onnx").exists() and not list(tmp.glob(".bad.onnx*"))


def test_tool_bad_checkpoint_is_one_error_line(checkpoint):
    tmp = checkpoint
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "export.py"), str(tmp / "tiny.py"), "--load-from",
                             str(tmp / "missing.pth"), "--out", str(tmp / "x.onnx")], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_speed_times_onnxruntime_next_to_eager(checkpoint, capsys, tmp_path):
    tmp = checkpoint
    export_onnx(trained_like(r18(64, 160)), tmp_path / "m.onnx", 64, 160)
    out = tmp_path / "speed.json"
    result = speed.main([str(tmp / "tiny.py"), "--iters", "2", "--warmup", "1", "--release-iters", "2",
                         "--release-warmup", "0", "--threads", "1", "--load-from", str(tmp / "net.pth"),
                         "--onnx", str(tmp_path / "m.onnx"), "--json", str(out)])
    table = capsys.readouterr().out
    assert result["onnx_forward_ms"] > 0 and result["forward_ms"] > 0
    assert result["onnx_vs_eager_forward"] == result["onnx_forward_ms"] / result["forward_ms"]
    assert result["onnx_max_abs_diff"] <= 1e-4 and result["onnx_providers"][0] == "CPUExecutionProvider"
    assert "onnxruntime forward ms/batch" in table and "onnxruntime / eager forward" in table
    assert json.loads(out.read_text())["onnx_forward_fps"] == result["onnx_forward_fps"]
    export_onnx(r18(96, 160), tmp_path / "other.onnx", 96, 160)
    with pytest.raises(ConfigError) as err:
        speed.main([str(tmp / "tiny.py"), "--iters", "1", "--warmup", "0", "--onnx", str(tmp_path / "other.onnx")])
    assert str(err.value) == (f"ONNX model {tmp_path / 'other.onnx'} takes 160x96 images (width x height) but the "
                              "config expects 160x64; export it again from this config")


@pytest.mark.parametrize("change", GEOMETRY_CHANGES)
def test_tool_refuses_a_checkpoint_of_another_geometry_in_one_line(checkpoint, tmp_path, capsys, change):
    tmp = checkpoint
    cfg = load_experiment(tmp / "tiny.py")
    path, named = checkpoint_of_other_geometry(tmp_path, r18(64, 160), cfg, change)
    argv = [str(tmp / "tiny.py"), "--load-from", str(path), "--out", str(tmp_path / "m.onnx")]
    assert exit_status(export_tool.main, argv, export_tool.ExportCheckError, ValueError) == 1
    assert_geometry_refused(capsys.readouterr().err, path, named)
    assert not (tmp_path / "m.onnx").exists()


def test_tool_takes_set_overrides(checkpoint, tmp_path, capsys):
    """--set as main.py takes it: the checkpoint trained at 160x64 exports from a 192x96 config
    set back to 160x64, with one note for its missing config."""
    tmp = checkpoint
    (tmp_path / "wide.py").write_text(f"_base_ = [{str(tmp / 'tiny.py')!r}]\nimg_w = 192\nimg_h = 96\n")
    export_tool.main([str(tmp_path / "wide.py"), "--load-from", str(tmp / "net.pth"), "--out", str(tmp_path / "m.onnx"),
                      "--set", "img_w=160", "img_h=64"])
    assert cpu_model(tmp_path / "m.onnx").input_size == (64, 160)
    assert capsys.readouterr().err.count("holds no config") == 1


def test_tool_with_decoder_checks_the_lanes_and_writes(checkpoint, capsys):
    """--with-decoder: the network check as before, then the file's lanes against the Python
    decoder on its own raw outputs at the config's threshold and at 0, at batch 1 and 3: no lane
    and no point differs; the file records its decoder."""
    tmp = checkpoint
    result = export_tool.main([str(tmp / "tiny.py"), "--load-from", str(tmp / "net.pth"), "--out",
                               str(tmp / "lanes.onnx"), "--with-decoder"])
    table = capsys.readouterr().out
    decoding = [(b, name, diff) for b, name, diff in result["rows"]
                if name.startswith(("lanes", "points", "categories,"))]
    assert sorted({(b, name) for b, name, _ in decoding}) == [
        (b, f"{what}, conf {conf}") for b in (1, 3) for what in ("categories", "lanes", "points")
        for conf in ("0", "0.4")]
    assert all(diff == 0 for _, _, diff in decoding) and "FAIL" not in table and table.count(" ok") == 18
    assert "inputs conf_threshold (default 0.4) and nms_thres (default 50), outputs valid" in table
    model = cpu_model(tmp / "lanes.onnx")
    assert model.decoder == {"top_k": 4, "num_points": 72, "img_w": 160, "conf_threshold": 0.4, "nms_thres": 50.0}
    final = model(torch.rand(2, 3, 64, 160))
    assert final.valid.shape == (2, 4) and final.xs.shape == (2, 4, 72) and final.predictions.shape == (2, 40, 76)


def test_tool_with_decoder_refuses_a_graph_that_decodes_otherwise(checkpoint, monkeypatch, capsys):
    """A graph whose lanes lose their top row (a broken point rule, here patched in) fails the
    check: one line naming the rows, no file."""
    from srlane.models import graph_decode

    tmp = checkpoint
    rule = graph_decode.point_mask_torch
    monkeypatch.setattr(graph_decode, "point_mask_torch",
                        lambda rows, n: rule(rows, n) & (torch.arange(n + 1) < n))
    with pytest.raises(export_tool.ExportCheckError) as err:
        export_tool.main([str(tmp / "tiny.py"), "--load-from", str(tmp / "net.pth"), "--out", str(tmp / "bad.onnx"),
                          "--with-decoder"])
    assert "\n" not in str(err.value) and "batch 1 lanes, conf 0 max |diff|" in str(err.value)
    assert "FAIL" in capsys.readouterr().out and not (tmp / "bad.onnx").exists()


def test_speed_times_the_file_with_the_decoder_end_to_end(checkpoint, capsys, tmp_path):
    """Fed the --set threshold (0: every proposal a candidate), the file's lanes are the eager
    path's; both end-to-end times are reported with their ratio."""
    tmp = checkpoint
    export_onnx(trained_like(r18(64, 160)), tmp_path / "lanes.onnx", 64, 160,
                decoder=build_decoder(load_experiment(tmp / "tiny.py")))
    result = speed.main([str(tmp / "tiny.py"), "--iters", "2", "--warmup", "1", "--release-iters", "2",
                         "--release-warmup", "0", "--threads", "1", "--load-from", str(tmp / "net.pth"),
                         "--onnx", str(tmp_path / "lanes.onnx"), "--set", "test_parameters.conf_threshold=0"])
    table = capsys.readouterr().out
    assert result["onnx_decoder_in_graph"] and result["onnx_max_abs_diff"] <= 1e-4
    assert result["onnx_lanes_per_image"] == result["lanes_per_image"] > 0
    assert result["onnx_vs_eager_end_to_end"] == result["onnx_end_to_end_ms"] / result["end_to_end_ms"]
    assert "(threshold and NMS in the graph)" in table and "onnxruntime / ours forward+decode" in table


def test_a_category_head_exports_its_logits_and_the_decoded_categories(tmp_path, capsys):
    """Network only: ``predictions`` (B, 40, 90) and ``category_logits`` (B, 40, 14), both within
    1e-4 of PyTorch; with the decoder: each lane's category and score as the Python decoder gives
    them from the same predictions, at batch 1 and 3 (the tool's check, no difference allowed)."""
    (tmp_path / "kinds.py").write_text(f"_base_ = [{str(SYNTHETIC)!r}]\nimg_w = 160\nimg_h = 64\n"
                                       "model = dict(num_lane_categories=14)\n")
    cfg = load_experiment(tmp_path / "kinds.py")
    torch.manual_seed(0)
    net = trained_like(build_net(cfg, pretrained=False))
    stage = net.roi_head.stage_heads[-1]
    with torch.no_grad():
        stage.category_layers.weight.copy_(torch.randn(stage.category_layers.weight.shape) * 0.5)
    torch.save({"net": net.state_dict(), "config": cfg.to_dict()}, tmp_path / "net.pth")
    args = [str(tmp_path / "kinds.py"), "--load-from", str(tmp_path / "net.pth"), "--out"]
    result = export_tool.main(args + [str(tmp_path / "net.onnx")])
    assert {name for _, name, _ in result["rows"]} == {"logits", "start/length", "xs", "categories"}
    assert all(diff <= 1e-4 for _, _, diff in result["rows"])
    graph = onnx.load(str(tmp_path / "net.onnx")).graph
    assert [o.name for o in graph.output] == ["predictions", "category_logits"]
    model = cpu_model(tmp_path / "net.onnx")
    img = torch.rand(3, 3, 64, 160, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = net.eval()(img)
    got = model(img)
    assert got.shape == (3, 40, 90) and float((got - want).abs().max()) <= 1e-4
    logits = model.session.run(["category_logits"], {"img": img.numpy()})[0]
    np.testing.assert_array_equal(logits, got[..., 76:].numpy())
    result = export_tool.main(args + [str(tmp_path / "lanes.onnx"), "--with-decoder"])
    kinds = [(b, diff) for b, name, diff in result["rows"] if name.startswith("categories,")]
    assert sorted(b for b, _ in kinds) == [1, 1, 3, 3] and all(diff == 0 for _, diff in kinds)
    assert "category, category_score (batch, 4)" in capsys.readouterr().out
    decoder = build_decoder(cfg, conf_threshold=0.0)
    lanes_model = cpu_model(tmp_path / "lanes.onnx")
    lanes_model.use_thresholds(0.0, decoder.nms_thres)
    for batch in (img[:1], img):
        final = lanes_model(batch)
        ours = [[(lane.category, lane.category_score) for lane in image] for image in decoder(final)]
        theirs = [[(lane.category, lane.category_score) for lane in image] for image in decoder(final.predictions)]
        assert [[c for c, _ in image] for image in ours] == [[c for c, _ in image] for image in theirs]
        assert all(abs(a[1] - b[1]) <= 1e-6 for x, y in zip(ours, theirs) for a, b in zip(x, y))
        assert len({c for image in ours for c, _ in image}) > 1  # the lanes differ in kind
    # what predict.py runs for --onnx and for --load-from: the same lanes with the same categories
    from srlane.inference.model import load_model, load_onnx
    from srlane.inference.predict import predict_batches
    from srlane.models.inference import InferenceOptions

    metas = [{"img_name": f"{i}.jpg", "img_path": f"/x/{i}.jpg", "img_size": (590, 1640), "cut_height": 270,
              "unreadable": False} for i in range(3)]
    batches = [{"img": (img * 255).to(torch.uint8), "meta": metas}]
    decoder = build_decoder(cfg, conf_threshold=0.0)
    eager = load_model(cfg, str(tmp_path / "net.pth"), InferenceOptions(), "cpu", print)
    for path in ("net.onnx", "lanes.onnx"):
        onnx_model = load_onnx(cfg, str(tmp_path / path), providers=["CPUExecutionProvider"], decoder=decoder)
        (ours,) = predict_batches(onnx_model, batches, decoder, torch.device("cpu"))
        (theirs,) = predict_batches(eager, batches, decoder, torch.device("cpu"))
        assert [[lane.category for lane in p.lanes] for p in ours] == [[lane.category for lane in p.lanes] for p in theirs]
        assert sum(len(p.lanes) for p in ours) > 3

"""On a CUDA GPU: mixed-precision training and resume, one-GPU strategies, autocast accuracy,
validation equal to CPU validation, decoding of CUDA tensors.

Skipped where there is no CUDA device; on a GPU machine run ``python -m pytest -m cuda``
(``python -m pytest`` runs them too, after the CPU tests).
"""
import warnings

import pytest
import torch

import main
from helpers.inference import r18_config, random_predictions, save_checkpoint
from helpers.inference import trained_like  # a refine head with outputs of order one, where precision errors show
from srlane.models.weights import load_checkpoint
from srlane.models import build_net
from srlane.models.decode import build_decoder
from helpers.engine import Interrupt, add_record, experiment, make_runner, weights  # noqa: F401 (experiment: the fixture)

pytestmark = pytest.mark.cuda
GPU = dict(accelerator="cuda")
WARNINGS_WE_REMOVED = ("lr_scheduler.step()", "AccumulateGrad", "set_float32_matmul_precision")


def _no_removed_warnings(caught) -> None:
    found = [str(w.message) for w in caught if any(text in str(w.message) for text in WARNINGS_WE_REMOVED)]
    assert not found, found


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_mixed_precision_training_and_resume(tmp_path, precision):
    """A stopped and resumed run ends with the weights of an uninterrupted one; under 16-mixed the
    grad scaler's scale and growth tracker come back from last.pth."""
    import signal

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full = make_runner(tmp_path, name="full", total_iter=7, save_interval=2, precision=precision, **GPU)
        full.train()
    _no_removed_warnings(caught)
    assert full.fabric.device.type == "cuda"
    cut = make_runner(tmp_path, name="cut", hooks=[Interrupt(5, signal.SIGTERM)], total_iter=7, save_interval=2,
                      precision=precision, **GPU)
    with pytest.raises(SystemExit):
        cut.train()
    saved = load_checkpoint(tmp_path / "cut" / "last.pth")
    resumed = make_runner(tmp_path, name="cut", total_iter=7, save_interval=2, precision=precision,
                          resume=str(tmp_path / "cut" / "last.pth"), **GPU)
    if precision == "16-mixed":
        assert saved["scaler"] is not None and resumed.scaler.state_dict() == saved["scaler"]
    else:
        assert saved["scaler"] is None and resumed.scaler is None
    resumed.train()
    a, b = weights(tmp_path / "full" / "last.pth"), weights(tmp_path / "cut" / "last.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("fused", [False, True])
def test_gradient_clipping_under_16_mixed_trains(tmp_path, fused):
    """grad_clip with the grad scaler: unscaled before clipping (fused AdamW too), overflowing
    steps skipped by the scaler instead of a non-finite-norm error."""
    runner = make_runner(tmp_path, precision="16-mixed", grad_clip=0.5,
                         optimizer=dict(type="AdamW", lr=1e-2, fused=fused), **GPU)
    runner.train()
    assert runner.state.step == 6 and all(torch.isfinite(p).all() for p in runner.net.parameters())


@pytest.mark.parametrize("strategy", ["dp", "ddp"])
def test_one_gpu_strategies_train_without_a_wrapper(tmp_path, strategy):
    runner = make_runner(tmp_path, strategy=strategy, precision="16-mixed", **GPU)
    record = add_record(runner)
    runner.train()
    assert runner.state.step == 6 and len(record.validations) == 2
    log = (tmp_path / "run" / "log.txt").read_text()
    assert f"one device: strategy {strategy} runs without a wrapper" in log
    assert "float32 matmul precision 'high' (TF32 on)" in log and "1 process(es) on cuda" in log


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 0.01), (torch.bfloat16, 0.05)])
def test_eval_forward_under_autocast_agrees_with_float32(dtype, tolerance):
    """Outputs (scores, start, angle, length, x offsets, all of order 1) within ``tolerance`` of
    the float32 forward (TF32 off for the reference)."""
    torch.manual_seed(0)
    net = trained_like(build_net(r18_config(), pretrained=False)).cuda().eval()
    img = torch.rand(4, 3, 64, 160, device="cuda")
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.no_grad():
            ref = net(img)
            with torch.autocast("cuda", dtype=dtype):
                low = net(img)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < tolerance


def test_decoder_on_cuda_tensors_equals_cpu():
    preds = random_predictions()
    decoder = build_decoder(r18_config())
    on_cpu, on_gpu = decoder(preds), decoder(preds.cuda())
    assert sum(map(len, on_cpu)) > 8
    for a, b in zip(on_cpu, on_gpu):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert torch.allclose(torch.as_tensor(x.points), torch.as_tensor(y.points), atol=1e-5)


def test_validate_only_on_cuda_counts_like_cpu(experiment, tmp_path):
    """The end-to-end run's best.pth validated on CPU and on CUDA (float32, TF32 off): equal
    tp/fp/fn per category, up to lanes whose score sits at the threshold: at most 2 may differ."""
    best = str(experiment / "full" / "best.pth")
    runs = {device: main.main([str(experiment / "exp.py"), "--validate-only", "--load-from", best, "--accelerator", device,
                               "--set", "matmul_precision='highest'", "--work-dir", str(tmp_path / device)])
            for device in ("cuda", "cpu")}
    gpu, cpu = runs["cuda"], runs["cpu"]
    assert gpu["0.5"]["tp"] + gpu["0.5"]["fp"] > 0
    for name in ("tp", "fp", "fn"):
        assert abs(gpu["0.5"][name] - cpu["0.5"][name]) <= 2, (name, gpu["0.5"], cpu["0.5"])
    for category, counts in cpu["categories"].items():
        for name in ("tp", "fp", "fn"):
            assert abs(gpu["categories"][category]["0.5"][name] - counts["0.5"][name]) <= 2


def test_decoder_nms_on_cuda_keeps_the_cpu_indices_and_lanes():
    """On CUDA tensors the decoder runs the threshold and NMS on the GPU (lane_nms_torch); with ties
    in score and in lanes it keeps the indices of the NumPy NMS on the same scores, and its lanes
    equal the CPU decoder's."""
    import numpy as np

    from srlane.models.nms import lane_nms, lane_nms_torch

    preds = random_predictions()
    preds[:, 1::2, :2] = preds[:, ::2, :2]  # equal scores
    preds[:, 1::4, 4:] = preds[:, ::4, 4:][:, :preds[:, 1::4].shape[1]]  # equal lanes
    cuda_preds = preds.cuda()
    for conf in (None, 0.0, 0.3):
        decoder = build_decoder(r18_config(), conf_threshold=conf)
        assert decoder.on_device(cuda_preds) and not decoder.on_device(preds)
        scores = torch.softmax(cuda_preds[..., :2], dim=-1)[..., 1]
        args = (cuda_preds[..., 2] * decoder.n_strips, cuda_preds[..., 3] * decoder.n_strips,
                cuda_preds[..., 4:] * decoder.img_w)
        indices, valid = lane_nms_torch(scores, *args, decoder.conf_threshold, decoder.nms_thres, decoder.top_k)
        assert indices.is_cuda and valid.is_cuda
        want = lane_nms(scores.cpu().numpy(), *(a.cpu().numpy() for a in args), decoder.conf_threshold,
                        decoder.nms_thres, decoder.top_k)
        assert [i[v].tolist() for i, v in zip(indices.cpu(), valid.cpu())] == [w.tolist() for w in want]
        on_cpu, on_gpu = decoder(preds), decoder(cuda_preds)
        assert sum(map(len, on_cpu)) > 8 and [len(a) for a in on_cpu] == [len(b) for b in on_gpu]
        for a, b in zip(on_cpu, on_gpu):
            for x, y in zip(a, b):
                assert np.array_equal(x.points, y.points)


def test_graph_decoder_on_cuda_keeps_the_cpu_decoders_lanes():
    """srlane.models.graph_decode.GraphDecoder on CUDA tensors (the decoder of an exported graph,
    run by torch on the GPU): on random and tie-heavy outputs at batch 1 and 3, the lanes of the
    CPU decoder, on the device until the lanes are made."""
    import numpy as np

    from helpers.inference import decoder_cases
    from srlane.models.graph_decode import GraphDecoder

    for cfg, conf, preds in decoder_cases():
        decoder = build_decoder(cfg, conf_threshold=conf)
        graph = GraphDecoder(cfg.img_w, cfg.num_points, decoder.top_k)
        for batch in (preds[:1], preds[:3]):
            final = graph(batch.cuda(), decoder.conf_threshold, decoder.nms_thres)
            assert final.valid.is_cuda and final.xs.is_cuda
            got, want = decoder.decode(final), decoder.decode(batch)
            assert [[p for _, p in image] for image in got] == [[p for _, p in image] for image in want]
            for a, b in zip(got, want):
                for (x, _), (y, _) in zip(a, b):
                    assert np.array_equal(x.points, y.points)


@pytest.fixture
def exact_float32():
    """float32 matmuls and convolutions without TF32 while the test runs."""
    previous = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(previous[0])
    torch.backends.cudnn.allow_tf32 = previous[1]


@pytest.mark.parametrize("options, tolerance", [
    (dict(fold_bn=True, channels_last=True), 1e-4),
    (dict(precision="fp16"), 0.01),
    (dict(precision="fp16", fold_bn=True, channels_last=True), 0.01),
    (dict(precision="bf16"), 0.05),
    (dict(compile="compile", fold_bn=True), 1e-4),
    (dict(compile="cudagraph", precision="fp16", channels_last=True), 0.01),
], ids=["fold+cl", "fp16", "fp16+fold+cl", "bf16", "compile", "cudagraph+fp16"])
def test_inference_options_on_cuda_agree_with_float32(exact_float32, options, tolerance):
    """uint8 images in, float32 predictions out, within the precision's tolerance of the plain
    float32 network (the tolerances of test_eval_forward_under_autocast_agrees_with_float32)."""
    from srlane.models.inference import InferenceOptions, prepare_for_inference

    torch.manual_seed(0)
    net = trained_like(build_net(r18_config(), pretrained=False)).cuda().eval()
    img = torch.randint(0, 256, (4, 3, 64, 160), dtype=torch.uint8, device="cuda")
    with torch.no_grad():
        ref = net(img)
    model = prepare_for_inference(net, InferenceOptions(**options), "cuda")
    for _ in range(2):  # the first call compiles or captures, the second replays
        out = model(img)
        assert out.dtype == torch.float32 and out.is_cuda and torch.isfinite(out).all()
        assert (out - ref).abs().max() < tolerance


def test_cudagraph_is_captured_while_another_thread_makes_cuda_calls():
    """As the loaders' pin-memory threads do during training: in torch's default "global" capture
    mode another thread's CUDA call breaks the capture; the graph is captured thread-locally."""
    import threading

    from srlane.models.inference import InferenceOptions, prepare_for_inference

    net = build_net(r18_config(), pretrained=False).cuda().eval()
    graphed = prepare_for_inference(net, InferenceOptions(compile="cudagraph"), "cuda")
    stop = threading.Event()

    def pin_memory_like():
        while not stop.is_set():
            torch.empty(1 << 16, dtype=torch.uint8).pin_memory()

    worker = threading.Thread(target=pin_memory_like, daemon=True)
    worker.start()
    try:
        img = torch.rand(2, 3, 64, 160, device="cuda")
        out = graphed(img)
    finally:
        stop.set()
        worker.join()
    torch.testing.assert_close(out, prepare_for_inference(net, InferenceOptions(), "cuda")(img), atol=1e-4, rtol=0)


def test_cudagraph_replays_its_shape_and_runs_other_shapes_eagerly(exact_float32):
    """New inputs of the captured shape give their own outputs (not the captured ones, not a
    buffer the next replay overwrites); another batch size runs the network eagerly; refreshed
    weights replay through the same graph."""
    from srlane.models.inference import CudaGraphModel, InferenceOptions, prepare_for_inference

    torch.manual_seed(0)
    net = build_net(r18_config(), pretrained=False).cuda().eval()
    eager = prepare_for_inference(net, InferenceOptions(), "cuda")
    graphed = prepare_for_inference(net, InferenceOptions(compile="cudagraph"), "cuda")
    assert isinstance(graphed, CudaGraphModel)
    first, second = (torch.rand(2, 3, 64, 160, device="cuda") for _ in range(2))
    out_first = graphed(first)
    assert graphed.graph is not None and tuple(graphed.static_input.shape) == (2, 3, 64, 160)
    out_second = graphed(second)
    torch.testing.assert_close(out_first, eager(first), atol=1e-5, rtol=0)
    torch.testing.assert_close(out_second, eager(second), atol=1e-5, rtol=0)
    one = torch.rand(1, 3, 64, 160, device="cuda")
    torch.testing.assert_close(graphed(one), eager(one), atol=1e-5, rtol=0)
    torch.testing.assert_close(graphed(first), out_first, atol=1e-5, rtol=0)
    graph = graphed.graph
    later = build_net(r18_config(), pretrained=False).cuda().eval()  # other weights, as after an epoch of training
    graphed.load_weights(later)
    assert graphed.graph is graph  # replayed, not captured again
    torch.testing.assert_close(graphed(first), prepare_for_inference(later, InferenceOptions(), "cuda")(first),
                               atol=1e-5, rtol=0)


def test_a_checkpoint_predicts_on_cuda_as_on_the_cpu(exact_float32, tmp_path):
    """``load_model`` on CUDA with folded BatchNorm and channels-last, and plain on the CPU:
    ``predict_batches`` gives raw outputs within 1e-4 (uint8 images in), the decoder runs on the
    device, and the embedding tap on the prepared network reads the same features of the CPU's
    proposals."""
    import numpy as np

    from srlane.inference import predict_batches
    from srlane.inference.features import EmbeddingTap
    from srlane.inference.model import load_model
    from srlane.models.inference import InferenceOptions

    cfg = r18_config()
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "net.pth", trained_like(build_net(cfg, pretrained=False)), cfg)
    g = torch.Generator().manual_seed(3)
    batch = {"img": torch.randint(0, 256, (4, 3, 64, 160), generator=g, dtype=torch.uint8),
             "meta": [{"img_path": f"{i}.jpg", "img_size": (590, 1640), "cut_height": 270} for i in range(4)]}
    decoder = build_decoder(cfg, conf_threshold=0.0)
    runs = {}
    for device, options in (("cpu", InferenceOptions()), ("cuda", InferenceOptions(fold_bn=True, channels_last=True))):
        model = load_model(cfg, str(path), options, device)
        tap = EmbeddingTap(model.net)
        (predictions,) = predict_batches(model, [batch], decoder, torch.device(device), keep_raw=True, tap=tap)
        runs[device] = predictions, tap
    (on_cpu, cpu_tap), (on_gpu, gpu_tap) = runs["cpu"], runs["cuda"]
    assert sum(len(p.lanes) for p in on_cpu) > 4 and decoder.on_device(torch.zeros(1, device="cuda"))
    for i, (cpu, gpu) in enumerate(zip(on_cpu, on_gpu)):
        assert np.abs(cpu.raw - gpu.raw).max() < 1e-4
        ours, theirs = cpu_tap.features(i, cpu.proposals), gpu_tap.features(i, cpu.proposals)
        for name in ("global", "lanes", "scores"):
            np.testing.assert_allclose(theirs[name], ours[name], atol=1e-4, rtol=0)


def test_speed_tool_on_cuda_with_a_cuda_graph(tmp_path):
    """tools/speed.py at batch 2 with --compile cudagraph: the release protocol (batch 1) gets its
    own captured model."""
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from tools import speed

    out = tmp_path / "speed.json"
    result = speed.main([str(root / "configs" / "srlane_r18_synthetic.py"), "--accelerator", "cuda", "--batch", "2",
                         "--iters", "3", "--warmup", "1", "--release-iters", "5", "--release-warmup", "1",
                         "--compile", "cudagraph", "--precision", "fp16", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["compile"] == "cudagraph" and result["precision"] == "fp16"
    assert result["release_forward_fps"] > 0 and result["forward_ms"] > 0


def test_speed_release_protocol_synchronises_once_around_its_calls(monkeypatch):
    """As the release's script: the timed calls queue on the device, one synchronisation before
    and one after them (a synchronisation per call reads a lower FPS)."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from tools import speed

    calls = []
    synchronize = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: (calls.append(args), synchronize(*args)))
    speed.main([str(root / "configs" / "srlane_r18_synthetic.py"), "--accelerator", "cuda", "--iters", "1",
                "--warmup", "0", "--release-iters", "40", "--release-warmup", "0"])
    assert len(calls) < 40  # ours synchronise each of their few calls; the release's 40 calls twice in all


def test_cuda_loaders_pin_uint8_batches_and_train(experiment, tmp_path):
    """On CUDA both loaders deliver page-locked uint8 images (a quarter of float32's bytes, copied
    without blocking the host); the run trains on them and validates."""
    from srlane.engine.build import build_runner
    from srlane.engine.defaults import load_experiment

    cfg = load_experiment(experiment / "exp.py", ["accelerator='cuda'", "workers=2", "total_iter=2"])
    runner = build_runner(cfg, str(tmp_path / "run"))
    for loader in (runner.train_loader(), runner.validate.loader()):
        batch = next(iter(loader))
        assert loader.pin_memory and batch["img"].dtype == torch.uint8 and batch["img"].is_pinned()
    runner.train()
    assert runner.state.step == 2 and runner.state.last_metrics  # validated at the end

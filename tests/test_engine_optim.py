import math

import pytest
import torch

from lightning.fabric import Fabric

from srlane.engine.fabric import precision_arguments
from srlane.engine.optim import build_optimizer, build_scheduler, clip_gradients, warmup_cosine_factor


def test_optimizer_by_name_with_arguments():
    net = torch.nn.Linear(3, 2)
    opt = build_optimizer({"type": "SGD", "lr": 0.5, "momentum": 0.9}, net)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="'AdamX' is not a torch.optim optimizer"):
        build_optimizer({"type": "AdamX", "lr": 1.0}, net)


def test_factor_matches_the_release_formula():
    assert warmup_cosine_factor(0, 800, 44440) == 0.0
    assert warmup_cosine_factor(400, 800, 44440) == 0.5
    assert warmup_cosine_factor(800, 800, 44440) == 1.0
    mid = 800 + (44440 - 800) // 2
    assert warmup_cosine_factor(mid, 800, 44440) == pytest.approx(0.5)
    assert warmup_cosine_factor(44440, 800, 44440) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine_factor(801, 800, 44440) == 0.5 * (1 + math.cos(math.pi / 43640))


def test_scheduler_steps_lr_first_step_at_zero():
    net = torch.nn.Linear(3, 2)
    opt = build_optimizer({"type": "AdamW", "lr": 6e-4}, net)
    sched = build_scheduler({"type": "warmup_cosine", "warmup_iter": 4}, opt, total_iter=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [6e-4 * warmup_cosine_factor(i, 4, 10) for i in range(10)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=0)
    assert lrs[0] == 0.0 and lrs[4] == pytest.approx(6e-4)
    with pytest.raises(ValueError, match="'step'"):
        build_scheduler({"type": "step"}, opt, 10)


def _scaled_step(clip, optimizer_kwargs, gradient):
    """One 16-mixed step of a linear layer whose gradient is ``gradient`` (times the scale), with
    the gradients clipped to norm 1 by ``clip(net, optimizer, scaler)``; returns the weight
    change, the scaler and the clipped norm."""
    net = torch.nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.1, **optimizer_kwargs)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = net.weight.detach().clone()
    scaler.scale((net.weight * gradient).sum()).backward()  # the weight's gradient: gradient x the scale
    clip(net, optimizer, scaler)
    norm = float(net.weight.grad.norm())
    scaler.step(optimizer)
    scaler.update()
    return net.weight.detach() - before, scaler, norm


@pytest.mark.parametrize("fused", [False, True])
def test_clipping_under_a_grad_scaler_unscales_first_and_leaves_overflows_to_it(fused):
    clip = lambda net, optimizer, scaler: clip_gradients(net, optimizer, scaler, 1.0)  # noqa: E731
    change, scaler, norm = _scaled_step(clip, {"fused": fused}, torch.tensor([[3.0, 4.0, 0.0, 0.0]]))
    assert norm == pytest.approx(1.0)  # unscaled (norm 5), then clipped to 1: not the scaled 5120
    assert change.abs().max() > 0 and scaler.get_scale() == 1024.0
    change, scaler, _ = _scaled_step(clip, {"fused": fused}, torch.tensor([[float("inf"), 1.0, 0.0, 0.0]]))
    assert change.abs().max() == 0 and scaler.get_scale() == 512.0  # the scaler skipped the update


def test_fabric_clipping_fails_on_these_steps():
    """What clip_gradients replaces: Fabric's clipping refuses fused optimizers under a scaler and
    raises on a non-finite norm, the step the scaler exists to skip."""
    fabric = Fabric(accelerator="cpu", devices=1, **precision_arguments("16-mixed", "cpu"))
    for fused, gradient, error in ((True, 1.0, NotImplementedError), (False, float("inf"), RuntimeError)):
        layer = torch.nn.Linear(4, 1, bias=False)
        net, optimizer = fabric.setup(layer, torch.optim.AdamW(layer.parameters(), fused=fused))
        fabric.backward((net.weight * gradient).sum())
        with pytest.raises(error):
            fabric.clip_gradients(net, optimizer, max_norm=1.0)

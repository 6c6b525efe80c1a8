import math

import pytest
import torch

from srlane.engine.optim import build_optimizer, build_scheduler, warmup_cosine_factor


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

import random

import numpy as np
import pytest
import torch

from srlane.engine.checkpoint import rng_state, save_checkpoint, set_rng_state
from srlane.models.weights import CheckpointError, load_checkpoint, load_net_weights


def net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def test_round_trip_with_weights_only_and_no_temp_files(tmp_path):
    model = net()
    state = {"net": model.state_dict(), "step": 7, "rng": rng_state(), "config": {"a": (1, 2), "b": None}}
    save_checkpoint(state, tmp_path / "last.pth")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]
    back = load_checkpoint(tmp_path / "last.pth")
    assert back["step"] == 7 and back["config"] == {"a": (1, 2), "b": None}
    other = net()
    load_net_weights(other, back["net"], "last.pth")
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)


def test_released_file_with_module_prefix_loads(tmp_path):
    model = net()
    torch.save({"net": {"module." + k: v for k, v in model.state_dict().items()}}, tmp_path / "rel.pth")
    other = net()
    load_net_weights(other, load_checkpoint(tmp_path / "rel.pth")["net"], "rel.pth")
    assert torch.equal(other[0].weight, model[0].weight)


def test_rng_state_restores_all_generators():
    state = rng_state()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_rng_state(state, print)
    second = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_rng_state_of_more_gpus_than_visible_restores_those_that_exist(monkeypatch):
    """A checkpoint of a 4-GPU run resumed on 2 GPUs: torch's set_rng_state_all indexes device 2
    and fails; the states of devices 0 and 1 are restored and a note says the rest were not."""
    state = rng_state()
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda value, device: restored.append((device, int(value[0]))))
    notes = []
    set_rng_state(state, notes.append)
    assert restored == [(0, 0), (1, 1)]
    assert notes == ["the checkpoint holds the random states of 4 GPU(s), 2 are visible: restored 2; "
                     "the run is not resumed bit for bit"]
    restored.clear()
    state["cuda"] = state["cuda"][:2]
    set_rng_state(state, notes.append)
    assert len(notes) == 1 and restored == [(0, 0), (1, 1)]


def test_wrong_architecture_lists_the_differences(tmp_path):
    small = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
    save_checkpoint({"net": small.state_dict()}, tmp_path / "small.pth")
    with pytest.raises(CheckpointError) as info:
        load_net_weights(net(), load_checkpoint(tmp_path / "small.pth")["net"], tmp_path / "small.pth")
    text = str(info.value)
    assert "small.pth does not fit this network" in text
    assert "missing keys (5): 1.bias, 1.num_batches_tracked, 1.running_mean" in text
    assert "0.weight: checkpoint (8, 3, 3, 3) vs network (4, 3, 3, 3)" in text


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a zip"])
def test_corrupt_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"bad.pth: not a readable torch checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint_and_missing_net(tmp_path):
    save_checkpoint({"net": net().state_dict()}, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth: not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "cut.pth")
    torch.save({"state_dict": {}}, tmp_path / "nonet.pth")
    with pytest.raises(CheckpointError, match="nonet.pth: expected a dict with a 'net' state dict"):
        load_checkpoint(tmp_path / "nonet.pth")
    with pytest.raises(CheckpointError, match="nothere.pth: file not found"):
        load_checkpoint(tmp_path / "nothere.pth")

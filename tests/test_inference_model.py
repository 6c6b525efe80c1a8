"""srlane.inference.model: a checkpoint's network for prediction, its config checked against this
one, the moving average preferred, the inference options applied (CPU, seconds)."""
import pytest
import torch
from torch import nn

from helpers.inference import GEOMETRY_CHANGES, checkpoint_of_other_geometry, r18_config, save_checkpoint, trained_like
from srlane.config import Config, ConfigError
from srlane.inference.model import checked_inference_weights, load_model, load_network
from srlane.models import build_net
from srlane.models.inference import InferenceOptions


@pytest.fixture(scope="module")
def trained():
    """An R18 at 160x64 with outputs of order one, and four uint8 images."""
    cfg = r18_config()
    torch.manual_seed(0)
    net = trained_like(build_net(cfg, pretrained=False)).eval()
    img = torch.randint(0, 256, (4, 3, 64, 160), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        return cfg, net, img, net(img)


def test_a_checkpoint_without_config_loads_with_one_note(trained, tmp_path):
    cfg, net, img, ref = trained
    path = save_checkpoint(tmp_path / "released.pth", net)
    notes = []
    loaded = load_network(cfg, str(path), "cpu", notes.append)
    assert notes == [f"{path} holds no config (a released checkpoint?): its input size, points and crop are "
                     "taken to be this config's"]
    assert not loaded.training and loaded is not net
    with torch.no_grad():
        assert torch.equal(loaded(img), ref)


def test_a_checkpoint_of_its_own_config_loads_without_a_note(trained, tmp_path):
    cfg, net, img, ref = trained
    path = save_checkpoint(tmp_path / "run.pth", net, cfg)
    notes = []
    other_decoding = Config(cfg.to_dict())
    other_decoding.test_parameters.conf_threshold = 0.9  # decoding keys do not change what the outputs mean
    other_decoding.model.backbone.pretrained = True  # nor how training started (never looked for here)
    with torch.no_grad():
        assert torch.equal(load_network(other_decoding, str(path), "cpu", notes.append)(img), ref)
    assert notes == []


@pytest.mark.parametrize("change", GEOMETRY_CHANGES)
def test_another_geometry_is_one_line_naming_both_values(trained, tmp_path, change):
    cfg, net, _, _ = trained
    path, named = checkpoint_of_other_geometry(tmp_path, net, cfg, change)
    for load in (lambda: load_network(cfg, str(path), "cpu"), lambda: checked_inference_weights(cfg, str(path))):
        with pytest.raises(ConfigError) as err:
            load()
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{path} was trained with another network geometry: ")
        assert all(part in message for part in named), message


def test_the_moving_average_is_what_predicts(trained, tmp_path):
    cfg, net, img, ref = trained
    torch.manual_seed(5)
    raw_weights = build_net(cfg, pretrained=False).state_dict()
    path = tmp_path / "ema.pth"
    torch.save({"net": raw_weights, "ema": net.state_dict(), "config": cfg.to_dict()}, path)
    weights = checked_inference_weights(cfg, str(path))
    assert all(torch.equal(weights[key], value) for key, value in net.state_dict().items())
    with torch.no_grad():
        assert torch.equal(load_network(cfg, str(path), "cpu")(img), ref)


def test_load_model_applies_the_inference_options(trained, tmp_path):
    cfg, net, img, ref = trained
    path = save_checkpoint(tmp_path / "run.pth", net, cfg)
    model = load_model(cfg, str(path), InferenceOptions(fold_bn=True, channels_last=True), "cpu")
    assert model.options == InferenceOptions(fold_bn=True, channels_last=True)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in model.net.modules())
    assert model.net.backbone.model.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    out = model(img)
    assert out.dtype == torch.float32 and 0 < (out - ref).abs().max() < 1e-5  # folded: rounding differs


def test_a_checkpoint_with_a_category_head_loads_for_prediction(trained, tmp_path):
    _, _, img, _ = trained
    cfg = r18_config()
    cfg.model.num_lane_categories = 14
    torch.manual_seed(0)
    net = build_net(cfg, pretrained=False).eval()
    path = save_checkpoint(tmp_path / "kinds.pth", net, cfg)
    model = load_model(cfg, str(path), InferenceOptions(fold_bn=False, channels_last=False), "cpu", print)
    with torch.no_grad():
        out = model(img)
        assert out.shape == (4, 40, 76 + 14) and torch.equal(out, net(img))  # the plain path: bit for bit
    # a config without the head refuses it in one line naming the key
    with pytest.raises(ConfigError, match="model.num_lane_categories 14 in the checkpoint, 0 in this config"):
        load_network(r18_config(), str(path), "cpu")


def test_a_checkpoint_saved_before_the_head_existed_loads_with_the_head_off(trained, tmp_path):
    cfg, net, img, ref = trained
    older = cfg.to_dict()
    del older["model"]["num_lane_categories"]
    path = save_checkpoint(tmp_path / "older.pth", net, Config(older))
    notes = []
    with torch.no_grad():
        assert torch.equal(load_network(cfg, str(path), "cpu", notes.append)(img), ref)
    assert notes == []

"""BatchNorm folding for inference: same outputs, no BatchNorm left, the original untouched."""
import torch
from torch import nn

from helpers.inference import r18_config
from srlane.models import build_net
from srlane.models.inference import fold_batch_norms, fold_conv_bn


def test_fold_conv_bn_by_hand():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    bn = nn.BatchNorm2d(1).eval()
    with torch.no_grad():
        conv.weight.fill_(2.0)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(4.0 - bn.eps)  # std 2
        bn.weight.fill_(3.0)
        bn.bias.fill_(0.5)
    fused = fold_conv_bn(conv, bn)
    x = torch.tensor([[[[5.0]]]])
    # bn(conv(5)) = (10 - 1) / 2 * 3 + 0.5 = 14
    assert fused(x).item() == 14.0
    assert torch.allclose(fused(x), bn(conv(x)))


def test_folded_detector_matches():
    torch.manual_seed(0)
    net = build_net(r18_config(160, 64), pretrained=False)
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics and affine terms
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    net.eval()
    folded = fold_batch_norms(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 20  # stem 1 + 8 blocks x 2 + 3 downsample
    x = torch.rand(2, 3, 64, 160, generator=g)
    with torch.no_grad():
        ref, out = net(x), folded(x)
        out_cl = folded.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out_cl, ref, atol=1e-4, rtol=1e-4)

"""NPR's own bottleneck block is torchvision's, parameter for parameter and output for output,
so published NPR checkpoints and the bundled default detector load and score as before."""

import pytest
import torch

from genvis_trust.detectors import npr


@pytest.mark.parametrize("inplanes,planes,stride,down", [(64, 64, 1, True), (256, 64, 1, False), (256, 128, 2, True)])
def test_block_matches_torchvision(inplanes, planes, stride, down):
    from torch import nn
    from torchvision.models.resnet import Bottleneck as TvBottleneck

    def downsample():
        if not down:
            return None
        return nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))

    torch.manual_seed(0)
    ref = TvBottleneck(inplanes, planes, stride, downsample()).eval()
    ours = npr.Bottleneck(inplanes, planes, stride, downsample()).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    for m in ref.modules():  # non-trivial batch-norm statistics, so the test can fail
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, inplanes, 16, 16)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))


def test_published_layout_and_bundled_default_unchanged(monkeypatch):
    from torchvision.models.resnet import Bottleneck as TvBottleneck

    from genvis_trust.detectors import load_detector

    def shapes(net):
        return {k: tuple(v.shape) for k, v in net.state_dict().items()}

    ours = npr.NPRNet(width=64, blocks=(3, 4))  # the published checkpoint's layout
    with monkeypatch.context() as m:
        m.setattr(npr, "Bottleneck", TvBottleneck)
        ref = npr.NPRNet(width=64, blocks=(3, 4))
    assert shapes(ours) == shapes(ref)
    assert "layer2.0.downsample.1.running_var" in shapes(ours)

    # every bundled NPR network: the old 32 px detector and the default stack's learned member
    for net in (load_detector("npr32-toy", device="cpu").net.eval(), load_detector("default", device="cpu").net.members[0].eval()):
        width, blocks = net.conv1.out_channels, (len(net.layer1), len(net.layer2))
        with monkeypatch.context() as m:
            m.setattr(npr, "Bottleneck", TvBottleneck)
            tv = npr.NPRNet(width=width, blocks=blocks).eval()
        tv.load_state_dict(net.state_dict(), strict=True)
        x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert torch.equal(net(x), tv(x))

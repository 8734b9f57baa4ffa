import pytest
import torch

from engine.model import SEResNet, count_parameters


def test_default_network_has_the_reports_parameter_count():
    assert count_parameters(SEResNet()) == 4_993_166


def test_output_shape_and_widths():
    x = torch.randn(3, 3, 32, 32)
    for width in (1.0, 0.25, 0.125):
        m = SEResNet(width=width).eval()
        assert m(x).shape == (3, 10)
    assert count_parameters(SEResNet(0.25)) < count_parameters(SEResNet(0.5)) < 4_993_166


def test_structure_matches_the_report():
    m = SEResNet()
    assert [len(s) for s in m.stages] == [4, 3, 2, 3]
    assert [s[0].conv1.out_channels for s in m.stages] == [64, 128, 128, 256]
    assert [s[0].conv1.stride[0] for s in m.stages] == [1, 2, 1, 2]
    # 1x1 conv + BN shortcut exactly where the shape changes (stage 2 and 4 entries)
    from torch import nn

    shortcuts = [type(b.shortcut) for s in m.stages for b in s]
    assert shortcuts.count(nn.Sequential) == 2


def test_bad_width_is_refused():
    with pytest.raises(ValueError):
        SEResNet(width=0)

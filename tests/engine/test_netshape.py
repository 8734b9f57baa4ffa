"""The network's shape as settings: parameter counts, FLOPs, refusals, and the model built from it."""

import pytest

from engine.model import SEResNet, count_parameters
from engine.shape import NetShape, ShapeError, budget_line


def independent_count(blocks, channels, strides, stem, se, r, width, classes=10):
    """Trainable parameters written from the layer formulas (not from the model or NetShape):
    conv k*k*cin*cout (no bias), BatchNorm 2*c, SE(c) two 1x1 convs with bias through
    max(1, c // r) hidden channels, a 1x1 conv + BN shortcut where the shape changes, and a
    linear head with bias."""
    def ch(c):
        return max(4, int(round(c * width)))

    def se_block(c):
        h = max(1, c // r)
        return (c * h + h) + (h * c + c)

    s = ch(stem)
    total = 9 * 3 * s + 2 * s + (se_block(s) if se == "stem" else 0)
    cin = s
    for n, c, st in zip(blocks, channels, strides):
        cout = ch(c)
        for i in range(n):
            stride = st if i == 0 else 1
            total += 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout
            if stride != 1 or cin != cout:
                total += cin * cout + 2 * cout
            if se == "blocks":
                total += se_block(cout)
            cin = cout
    return total + cin * classes + classes


SHAPES = [
    dict(blocks=(4, 3, 2, 3), channels=(64, 128, 128, 256), strides=(1, 2, 1, 2), stem=64, se="stem", r=16, width=1.0),
    dict(blocks=(2,), channels=(32,), strides=(2,), stem=16, se="none", r=16, width=1.0),
    dict(blocks=(1, 1), channels=(32, 64), strides=(1, 2), stem=32, se="blocks", r=8, width=0.5),
    dict(blocks=(2, 2, 2), channels=(16, 32, 64), strides=(1, 2, 2), stem=16, se="stem", r=4, width=2.0),
    dict(blocks=(1, 2, 1, 1, 1), channels=(16, 32, 32, 64, 64), strides=(1, 2, 1, 2, 1), stem=24, se="blocks", r=16,
         width=0.75),
    dict(blocks=(1, 1, 1, 1, 1, 1), channels=(8, 16, 16, 32, 32, 64), strides=(1, 2, 1, 2, 1, 2), stem=8, se="none",
         r=2, width=0.125),
]


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{len(s['blocks'])}stages-{s['se']}-w{s['width']}")
def test_parameter_count_matches_the_layer_formulas(spec):
    shape = NetShape(blocks=spec["blocks"], channels=spec["channels"], strides=spec["strides"],
                     stem_channels=spec["stem"], se=spec["se"], se_reduction=spec["r"], width=spec["width"]).validate()
    expected = independent_count(spec["blocks"], spec["channels"], spec["strides"], spec["stem"], spec["se"], spec["r"],
                                 spec["width"])
    assert shape.params() == expected
    assert count_parameters(SEResNet(shape=shape)) == expected


def test_the_report_network_stays_4993166():
    assert NetShape().params() == 4_993_166 == count_parameters(SEResNet())
    assert independent_count((4, 3, 2, 3), (64, 128, 128, 256), (1, 2, 1, 2), 64, "stem", 16, 1.0) == 4_993_166


def test_flops_of_one_conv_network():
    # stem 3x3 conv 3->4 at 32x32, one block 4->4 stride 1, head 4->10, no SE:
    # 2*(27*4*1024) + 2*(2*36*4... ) written out: conv MACs = k*k*cin*cout*H*W
    shape = NetShape(blocks=(1,), channels=(4,), strides=(1,), stem_channels=4, se="none").validate()
    macs = 9 * 3 * 4 * 1024 + 2 * (9 * 4 * 4 * 1024) + 4 * 10
    assert shape.flops() == 2 * macs


def test_parse_and_records():
    s = NetShape.parse(blocks="2,2", channels="32, 64", strides="1,2", stem_channels=16, se="blocks", width=0.5)
    assert s.blocks == (2, 2) and s.channels == (32, 64) and s.se == "blocks"
    assert NetShape.from_record(s.to_record()) == s
    assert NetShape.from_record(None, width=0.25) == NetShape(width=0.25)  # an old checkpoint: the report's net


@pytest.mark.parametrize("given,message", [
    (dict(blocks="4,3,2"), "--channels gives 4 values for 3 stages"),
    (dict(blocks="1,1,1,1,1,1,1", channels="8,8,8,8,8,8,8", strides="1,1,1,1,1,1,1"), "7 stages; a network has 1 to 6"),
    (dict(blocks="a,b"), "--blocks takes whole numbers"),
    (dict(strides="1,3,1,2"), "stride is 1 or 2"),
    (dict(se="everywhere"), "--se 'everywhere'"),
    (dict(blocks="0,3,2,3"), "at least 1 block"),
    (dict(channels="64,128,128,100000"), "cannot be trained here"),
    (dict(blocks="500,3,2,3"), "508 blocks in all"),
    (dict(blocks="150", channels="128", strides="1"), "cannot fit in memory"),
])
def test_impossible_shapes_are_refused_with_one_line(given, message):
    with pytest.raises(ShapeError, match=message.replace("(", r"\(")) as e:
        NetShape.parse(**given)
    assert "\n" not in str(e.value)


def test_budget_line():
    assert budget_line(4_993_166, 5_000_000) == "4,993,166 of 5,000,000 (99.9%)"
    assert budget_line(6_234_567, 5_000_000).startswith("over by 1,234,567")


def test_stage_summary():
    summary = NetShape().summary()
    assert [s["blocks"] for s in summary["stages"]] == [4, 3, 2, 3]
    assert [s["output"] for s in summary["stages"]] == [[64, 32, 32], [128, 16, 16], [128, 16, 16], [256, 8, 8]]
    assert summary["params"] == 4_993_166 and summary["within_budget"]


def _rewritten(finished_run, tmp_path, change):
    import torch

    ck = torch.load(finished_run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    change(ck["arch"])
    out = tmp_path / "edited.pt"
    torch.save(ck, out)
    return out


def test_checkpoints_record_and_rebuild_their_shape(finished_run, tmp_path):
    from engine.checkpoint import CheckpointError, build_model_from_checkpoint, load_checkpoint

    ck = load_checkpoint(finished_run / "checkpoints" / "last.pt")
    assert ck["arch"]["shape"]["blocks"] == [4, 3, 2, 3]
    assert count_parameters(build_model_from_checkpoint(ck)) == ck["arch"]["params"]
    # written before shapes were recorded: the report's network at the checkpoint's width
    old = load_checkpoint(_rewritten(finished_run, tmp_path, lambda a: a.pop("shape")))
    assert count_parameters(build_model_from_checkpoint(old)) == ck["arch"]["params"]
    # a shape that does not match the weights, and one that cannot be built: one line each
    for change, words in ((lambda a: a["shape"].update(blocks=[2, 2, 2, 2]), "do not fit"),
                          (lambda a: a["shape"].update(channels=[64, 128, 128, 100000]), "not buildable"),
                          (lambda a: a.update(shape="big"), "not buildable")):
        with pytest.raises(CheckpointError, match=words) as e:
            build_model_from_checkpoint(load_checkpoint(_rewritten(finished_run, tmp_path, change)))
        assert "\n" not in str(e.value)

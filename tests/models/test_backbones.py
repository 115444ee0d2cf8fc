"""Backbones run functionally, normalise with batch statistics, and checkpoints round-trip without pickle."""

from __future__ import annotations

import json

import pytest
import torch
from torch.func import functional_call

from models.backbones import Conv4, ResNet12, build_backbone, inner_parameter_names
from models.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from tests.tolerances import unit_roundoff


@pytest.mark.parametrize(
    "config,shape,features",
    [
        ({"name": "conv4"}, (2, 1, 28, 28), 64),
        ({"name": "conv4", "in_channels": 3, "image_size": 84, "filters": 48}, (2, 3, 84, 84), 1200),
        ({"name": "resnet12", "in_channels": 1, "image_size": 28, "widths": [8, 16, 24, 32]}, (2, 1, 28, 28), 32),
        ({"name": "mlp"}, (7, 1), 40),
    ],
)
def test_output_shapes(config, shape, features):
    model = build_backbone(config)
    x = torch.randn(*shape)
    assert model(x, features_only=True).shape == (shape[0], features)
    assert model(x).shape[0] == shape[0]


def test_paper_sizes():
    # ALFA's ResNet12 (64-128-256-512) has about 7.9M parameters; 4-CONV with 48 filters 1200 features.
    assert 7.8e6 < sum(p.numel() for p in ResNet12().parameters()) < 8.1e6
    assert Conv4(3, 84, 48).feature_dim == 1200
    assert ResNet12(widths=(64, 160, 320, 640)).feature_dim == 640


def test_inner_parameters_are_conv_and_linear_only():
    names = inner_parameter_names(build_backbone({"name": "resnet12", "widths": [4, 4, 4, 4]}))
    assert len(names) == 4 * 4 + 2  # 4 convs per block (3 + shortcut, no bias), head weight and bias
    assert not any("bn" in n for n in names)
    assert "head.bias" in names


def test_functional_call_uses_fast_weights_and_leaves_module_alone():
    model = Conv4(1, 28, 8)
    before = {n: p.clone() for n, p in model.named_parameters()}
    fast = {n: p.detach() * 0.5 for n, p in model.named_parameters()}
    x = torch.randn(4, 1, 28, 28)
    out_fast = functional_call(model, fast, (x,))
    # Batch norm undoes the halved convolutions, but not its own halved scales or the halved head: the logits
    # change by about their own size, not by rounding, far beyond allclose's 1e-5 relative.
    assert not torch.allclose(out_fast, model(x))
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])


def test_batch_norm_uses_current_batch_statistics_only():
    model = Conv4(1, 28, 8)
    assert not any(b is not None and b.numel() for b in model.buffers())
    x = torch.randn(6, 1, 28, 28)
    model.eval()  # no running statistics exist, so eval mode must still normalise per batch
    first = model(x)[:3]
    changed = model(torch.cat([x[:3], 10 * x[3:]]))[:3]
    # Scaling half the batch by 10 moves the batch statistics by O(1), not by rounding.
    assert not torch.allclose(first, changed)


def test_checkpoint_round_trip_and_half_precision(tmp_path):
    tensors = {"backbone.w": torch.randn(3, 3), "rule.n": torch.arange(4)}
    meta = {"backbone": {"name": "conv4"}, "note": "x"}
    path = save_checkpoint(tmp_path / "c.safetensors", tensors, meta)
    loaded, loaded_meta = load_checkpoint(path)
    assert torch.equal(loaded["backbone.w"], tensors["backbone.w"]) and torch.equal(loaded["rule.n"], tensors["rule.n"])
    assert loaded_meta["note"] == "x" and loaded_meta["format"] == "fewshot-checkpoint"
    half = save_checkpoint(tmp_path / "h.safetensors", tensors, meta, dtype=torch.float16)
    loaded_half, _ = load_checkpoint(half)
    assert loaded_half["backbone.w"].dtype == torch.float32
    # One round-to-nearest conversion to float16 (back to float32 is exact): off by at most u16 = 2**-11
    # relatively, or half the subnormal spacing (u16 * smallest normal = 2**-25) below the normal range.
    u16 = unit_roundoff(torch.float16)
    torch.testing.assert_close(loaded_half["backbone.w"], tensors["backbone.w"],
                               rtol=u16, atol=u16 * torch.finfo(torch.float16).tiny)
    assert loaded_half["rule.n"].dtype == torch.int64
    assert not list(tmp_path.glob("*.tmp"))


def test_files_that_are_not_checkpoints_get_clear_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not a checkpoint, maybe a pickle")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        read_metadata(junk)
    with pytest.raises(CheckpointError, match="not found"):
        read_metadata(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(1)}, str(plain), metadata={"other": json.dumps({})})
    with pytest.raises(CheckpointError, match="no few-shot checkpoint metadata"):
        load_checkpoint(plain)


@pytest.mark.parametrize(
    "config",
    [
        {"name": "conv4", "filters": 4},
        {"name": "conv4", "filters": 4, "n_blocks": 2},
        {"name": "resnet12", "widths": [4, 4, 4, 4]},
        {"name": "mlp", "hidden": [8, 8, 8]},
    ],
)
def test_every_parameter_has_one_readable_label_and_depth_grows_towards_the_head(config):
    model = build_backbone(config)
    labels = model.layer_labels()
    assert [label.name for label in labels] == [name for name, _ in model.named_parameters()]
    assert len({label.label for label in labels}) == len(labels)
    assert not any(label.label == label.name for label in labels)
    depths = [label.depth for label in labels]
    assert depths[0] == 0 and depths == sorted(depths)
    assert {label.depth for label in labels if label.name.startswith("head.")} == {max(depths)}
    by_name = {label.name: label for label in labels}
    inner = inner_parameter_names(model)
    assert [by_name[name].depth for name in inner] == sorted(by_name[name].depth for name in inner)


def test_readable_labels_name_block_part_and_tensor():
    conv4 = {label.name: label for label in Conv4(1, 28, 4).layer_labels()}
    assert conv4["features.4.weight"].label == "block 2 conv weight" and conv4["features.4.weight"].depth == 1
    assert conv4["features.5.weight"].label == "block 2 BN scale (γ)"
    assert conv4["features.5.bias"].label == "block 2 BN shift"
    assert (conv4["head.weight"].label, conv4["head.weight"].depth) == ("head weight", 4)
    resnet = {label.name: label for label in ResNet12(1, 28, (4, 4, 4, 4)).layer_labels()}
    assert resnet["features.1.conv2.weight"].label == "block 2 conv 2 weight"
    assert resnet["features.1.conv2.weight"].depth == 4
    assert resnet["features.0.shortcut_conv.weight"].label == "block 1 shortcut conv weight"
    assert resnet["features.0.shortcut_bn.weight"].label == "block 1 shortcut BN scale (γ)"
    assert resnet["features.0.shortcut_conv.weight"].depth == resnet["features.0.conv3.weight"].depth == 2
    assert resnet["head.bias"].label == "head bias" and resnet["head.bias"].depth == 12

"""4-CONV: paper sizes, readable labels, functional calls with fast weights, batch norm on batch statistics."""

from __future__ import annotations

import torch
from torch.func import functional_call

from models.backbones.conv4 import Conv4


def test_paper_sizes():
    # ALFA's miniImageNet 4-CONV: 48 filters at 84x84 give 1200 features; Omniglot's 64 filters at 28x28 give 64.
    assert Conv4(3, 84, 48).feature_dim == 1200
    assert Conv4().feature_dim == 64
    assert Conv4(3, 84, 48)(torch.randn(2, 3, 84, 84), features_only=True).shape == (2, 1200)


def test_readable_labels_name_block_part_and_tensor():
    conv4 = {label.name: label for label in Conv4(1, 28, 4).layer_labels()}
    assert conv4["features.4.weight"].label == "block 2 conv weight" and conv4["features.4.weight"].depth == 1
    assert conv4["features.5.weight"].label == "block 2 BN scale (γ)"
    assert conv4["features.5.bias"].label == "block 2 BN shift"
    assert (conv4["head.weight"].label, conv4["head.weight"].depth) == ("head weight", 4)


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

"""Readable layer names reach the app through core: declared by the backbone, raw names for anything else."""

from __future__ import annotations

from core.layer_names import label_layers, layer_labels

CONV4 = {"name": "conv4", "filters": 64, "n_blocks": 4, "n_classes": 5}
RESNET12 = {"name": "resnet12", "in_channels": 1, "image_size": 28, "widths": [32, 64, 128, 256], "n_classes": 5}


def test_layer_labels_of_a_stored_backbone_config():
    labels = {label.name: label for label in layer_labels(CONV4)}
    assert labels["features.4.weight"].label == "block 2 conv weight"
    assert labels["head.weight"].label == "head weight" and labels["head.weight"].depth == 4
    resnet = layer_labels(RESNET12)
    assert len(resnet) == 4 * 12 + 2
    assert resnet[0].label == "block 1 conv 1 weight" and resnet[-1].label == "head bias"


def test_no_config_or_an_unknown_backbone_gives_no_labels():
    assert layer_labels(None) == []
    assert layer_labels({}) == []
    assert layer_labels({"name": "transformer"}) == []
    assert layer_labels({"name": "conv4", "no_such_option": 1}) == []


def test_trace_names_are_put_in_depth_order_with_raw_names_for_unknown_ones():
    names = ["head.bias", "features.12.weight", "features.0.weight", "rule.extra", "head.weight"]
    labelled = label_layers(names, CONV4)
    assert [label.label for label in labelled] == [
        "block 1 conv weight", "block 4 conv weight", "head weight", "head bias", "rule.extra",
    ]
    assert [label.depth for label in labelled] == [0, 3, 4, 4, 5]


def test_without_a_backbone_config_the_raw_names_keep_their_order():
    labelled = label_layers(["features.4.weight", "features.0.weight"], None)
    assert [(label.name, label.label, label.depth) for label in labelled] == [
        ("features.4.weight", "features.4.weight", 0),
        ("features.0.weight", "features.0.weight", 1),
    ]

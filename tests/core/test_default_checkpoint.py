"""The default checkpoint is the one its folder's MANIFEST.json names."""

from __future__ import annotations

from pathlib import Path

from core.default_checkpoint import is_default_checkpoint
from core.shipping import write_manifest

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "checkpoints"


def test_the_manifest_names_the_default(tmp_path):
    write_manifest(tmp_path, {"default": "b.safetensors", "checkpoints": {}})
    assert is_default_checkpoint(tmp_path / "b.safetensors")
    assert not is_default_checkpoint(tmp_path / "a.safetensors")
    assert not is_default_checkpoint(tmp_path / "sub" / "b.safetensors")  # another folder, no manifest


def test_no_default_without_a_readable_manifest(tmp_path):
    assert not is_default_checkpoint(tmp_path / "a.safetensors")
    (tmp_path / "MANIFEST.json").write_text("{not json")
    assert not is_default_checkpoint(tmp_path / "a.safetensors")


def test_the_shipped_default_is_resnet12_alfa_maml():
    assert [p.name for p in sorted(SHIPPED.glob("*.safetensors")) if is_default_checkpoint(p)] == [
        "resnet12_alfa_maml.safetensors"
    ]

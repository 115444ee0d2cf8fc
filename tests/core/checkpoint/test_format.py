"""The checkpoint file: tensors and a JSON header round-trip without pickle; anything else is a clear error."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoint.format import (
    FORMAT_VERSION,
    CheckpointError,
    read_header,
    read_tensors,
    rewrite_header,
    split_prefix,
    write_file,
)
from tests.tolerances import unit_roundoff


def test_checkpoint_round_trip_and_half_precision(tmp_path):
    tensors = {"backbone.w": torch.randn(3, 3), "rule.n": torch.arange(4)}
    header = {"backbone": {"name": "conv4"}, "note": "x"}
    path = write_file(tmp_path / "c.safetensors", tensors, header)
    loaded, loaded_header = read_tensors(path), read_header(path)
    assert torch.equal(loaded["backbone.w"], tensors["backbone.w"]) and torch.equal(loaded["rule.n"], tensors["rule.n"])
    assert loaded_header["note"] == "x" and loaded_header["format"] == "fewshot-checkpoint"
    half = write_file(tmp_path / "h.safetensors", tensors, header, dtype=torch.float16)
    loaded_half = read_tensors(half)
    assert loaded_half["backbone.w"].dtype == torch.float32
    # One round-to-nearest conversion to float16 (back to float32 is exact): off by at most u16 = 2**-11
    # relatively, or half the subnormal spacing (u16 * smallest normal = 2**-25) below the normal range.
    u16 = unit_roundoff(torch.float16)
    torch.testing.assert_close(loaded_half["backbone.w"], tensors["backbone.w"],
                               rtol=u16, atol=u16 * torch.finfo(torch.float16).tiny)
    assert loaded_half["rule.n"].dtype == torch.int64
    assert not list(tmp_path.glob("*.tmp"))
    assert split_prefix(loaded, "rule").keys() == {"n"}


def test_files_that_are_not_checkpoints_get_clear_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not a checkpoint, maybe a pickle")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        read_header(junk)
    with pytest.raises(CheckpointError, match="not found"):
        read_header(tmp_path / "missing.safetensors")

    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(1)}, str(plain), metadata={"other": json.dumps({})})
    with pytest.raises(CheckpointError, match="no few-shot checkpoint metadata"):
        read_header(plain)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other), metadata={"fewshot": json.dumps({"format": "someone-else"})})
    with pytest.raises(CheckpointError, match="unknown checkpoint format 'someone-else'"):
        read_header(other)


def test_a_newer_container_version_asks_for_an_update(tmp_path):
    newer = tmp_path / "newer.safetensors"
    header = {"format": "fewshot-checkpoint", "format_version": FORMAT_VERSION + 1}
    save_file({"x": torch.zeros(1)}, str(newer), metadata={"fewshot": json.dumps(header)})
    with pytest.raises(CheckpointError, match="newer than this code understands.*update the tool"):
        read_header(newer)


def _tensor_part(path) -> tuple[dict, bytes]:
    """The safetensors table without our header, and the data bytes after it."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    table = json.loads(raw[8 : 8 + length])
    table.pop("__metadata__")
    return table, raw[8 + length :]


def test_rewriting_the_header_keeps_the_tensor_bytes(tmp_path):
    tensors = {"backbone.w": torch.randn(3, 5), "backbone.b": torch.randn(7), "rule.n": torch.arange(3)}
    path = write_file(tmp_path / "c.safetensors", tensors, {"note": "x"}, dtype=torch.float16)
    before = _tensor_part(path)
    rewrite_header(path, {"note": "a longer note than before", "added": [1, 2, 3]})
    assert _tensor_part(path) == before
    assert int.from_bytes(path.read_bytes()[:8], "little") % 8 == 0  # the data stays 8-byte aligned
    header = read_header(path)
    assert (header["note"], header["added"], header["format_version"]) == ("a longer note than before", [1, 2, 3],
                                                                         FORMAT_VERSION)
    loaded = read_tensors(path)
    assert torch.equal(loaded["backbone.w"], tensors["backbone.w"].half().float())
    assert torch.equal(loaded["rule.n"], tensors["rule.n"])
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "other.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        rewrite_header(tmp_path / "other.safetensors", {})

"""Checkpoint files: rotation keeps the newest, a damaged file is named."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ppi_dist.errors import CorruptFileError
from ppi_dist.files import read_safetensors
from ppi_dist.training import checkpoint as ckpt


def test_rotate_never_deletes_the_newest(tmp_path):
    for step in (4, 8, 12):
        directory = ckpt.step_dir(tmp_path, step)
        directory.mkdir()
        (directory / ckpt.COMPLETE).touch()
    ckpt.rotate(tmp_path, 0)  # a pre-emption save right after: must survive
    assert ckpt.latest_checkpoint(tmp_path) == ckpt.step_dir(tmp_path, 12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000012"]


def test_truncated_checkpoint_file_is_named(tmp_path):
    path = tmp_path / "rng_0.safetensors"
    save_file({"torch": torch.zeros(64, dtype=torch.uint8)}, path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptFileError, match=r"rng_0\.safetensors"):
        read_safetensors(path)

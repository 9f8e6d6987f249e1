"""Data-test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.pair_files import make_proteome


@pytest.fixture
def proteome(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """40 proteins of 5 to 60 residues in a FASTA file (60-column lines, like the real ones)."""
    return make_proteome(tmp_path)

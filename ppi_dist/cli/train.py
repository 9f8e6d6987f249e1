"""Train SE-CAI: a recipe (YAML) and `--key value` flags, then the training loop.

    accelerate launch ppi_dist/train.py --config recipes/bernett_650m.yaml [--key value ...]
    ppi-dist train --config recipes/synthetic_tiny.yaml          # one process

The fields are those of `ppi_dist.training.config.TrainConfig` (`--help` lists them); the loop
is `ppi_dist.training.loop.train`.
"""

from __future__ import annotations

import os
import sys

import torch

from ppi_dist.cli.boundary import run_tool
from ppi_dist.files import writing_to
from ppi_dist.training.loop import train
from ppi_dist.training.recipes import load_config


def main(argv: list[str] | None = None) -> int:
    """User errors (bad flags, files, folders, a non-finite loss): one line, exit 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def run(args: list[str]) -> int:
        config = load_config(args)
        # A full disk or read-only output_dir: one line naming the file; the checkpoints
        # written before it stay, so the run resumes once there is room.
        with writing_to(config.run.output_dir, then="; then resume with --resume_from latest"):
            train(config)
        return 0

    try:
        return run_tool(run, argv, keep_debug_flag=True)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # clean teardown: no SIGABRT at exit
        sys.stdout.flush()

"""`ppi-dist COMMAND ...`: one command line for every tool.

    ppi-dist train --config recipes/synthetic_tiny.yaml     # = accelerate launch ppi_dist/train.py
    ppi-dist predict --model DIR --fasta proteome.fasta --out scores.tsv
    ppi-dist evaluate | explain | report | split | audit | push | synthetic | parameters |
        estimate ...

Each command is a thin flag layer over the library (`ppi_dist.cli.<command>`), and `ppi-dist
COMMAND --help` lists its flags. The older spellings (`python -m ppi_dist.predict`, the
`ppi-dist-predict` scripts) run the same code.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module under ppi_dist.cli, what it does)
COMMANDS = {
    "train": "train SE-CAI (single process; `accelerate launch ppi_dist/train.py` for more)",
    "predict": "score pairs with a saved model: a pair file, all-vs-all, or set A x set B",
    "evaluate": "a saved model on a labelled pair file, with intervals and baselines",
    "explain": "which residues of A and B drive a pair's score: hotspots and attention maps",
    "report": "metrics and plots of a predictions file at a threshold chosen elsewhere",
    "split": "protein-disjoint train/validation split of a pair file",
    "audit": "leakage audit of a train/test split",
    "push": "upload a model folder to the Hugging Face Hub",
    "synthetic": "write the embedded synthetic task",
    "parameters": "SE-CAI's trainable parameters for an ESM-2 shape",
    "estimate": "an epoch's FLOPs and GPU-hours for a pair file, a shape and a budget",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ppi-dist COMMAND [flags]\n\ncommands:")
        for name, what in COMMANDS.items():
            print(f"  {name:<11} {what}")
        print("\n`ppi-dist COMMAND --help` lists a command's flags.")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    # Imported on demand: `ppi-dist audit` need not load the trainer.
    module = importlib.import_module(f"ppi_dist.cli.{command}")
    return module.main(rest)

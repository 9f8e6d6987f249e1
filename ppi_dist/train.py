"""The headline command: `accelerate launch ppi_dist/train.py --config RECIPE [--key value ...]`.

Run as a file, so the folder above is put first on the import path (in place of this one,
whose module names would shadow libraries'): the package imports from a checkout that was
never installed. The trainer is `ppi_dist.cli.train`; the loop `ppi_dist.training.loop`.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from ppi_dist.cli.train import main

if __name__ == "__main__":
    sys.exit(main())

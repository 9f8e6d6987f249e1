"""`python -m ppi_dist.cli COMMAND ...`: the `ppi-dist` command without its script."""

import sys

from ppi_dist.cli.main import main

sys.exit(main())

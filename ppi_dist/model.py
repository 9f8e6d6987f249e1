"""`python -m ppi_dist.model`: kept for scripts written before `ppi-dist parameters`."""

from ppi_dist.cli.parameters import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m ppi_dist.report`: the older spelling of `ppi-dist report`."""

from ppi_dist.cli.report import main

if __name__ == "__main__":
    raise SystemExit(main())

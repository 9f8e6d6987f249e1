"""`python -m ppi_dist.evaluate`: the older spelling of `ppi-dist evaluate`."""

from ppi_dist.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())

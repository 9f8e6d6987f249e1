"""`python -m ppi_dist.split`: the older spelling of `ppi-dist split`."""

from ppi_dist.cli.split import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m ppi_dist.audit`: the older spelling of `ppi-dist audit`."""

from ppi_dist.cli.audit import main

if __name__ == "__main__":
    raise SystemExit(main())

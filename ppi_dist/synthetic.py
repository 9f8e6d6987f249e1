"""`python -m ppi_dist.synthetic`: the older spelling of `ppi-dist synthetic`."""

from ppi_dist.cli.synthetic import main

if __name__ == "__main__":
    raise SystemExit(main())

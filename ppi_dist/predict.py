"""`python -m ppi_dist.predict`: the older spelling of `ppi-dist predict`."""

from ppi_dist.cli.predict import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m ppi_dist.push`: the older spelling of `ppi-dist push`."""

from ppi_dist.cli.push import main

if __name__ == "__main__":
    raise SystemExit(main())

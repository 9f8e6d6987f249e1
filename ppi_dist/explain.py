"""`python -m ppi_dist.explain`: the same as `ppi-dist explain`."""

from ppi_dist.cli.explain import main

if __name__ == "__main__":
    raise SystemExit(main())

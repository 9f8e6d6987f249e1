"""Upload a saved SE-CAI folder to the Hugging Face Hub.

    python -m ppi_dist.push runs/best user/secai-bernett [--private] [--revision BRANCH]

The token comes from the HF_TOKEN environment variable or `hf auth login`; there is no
token argument on purpose (command lines end up in shell history and process lists).
"""

from __future__ import annotations

import argparse
import logging

from ppi_dist.cli import run_tool
from ppi_dist.hub import push_folder


def main(argv: list[str] | None = None) -> int:
    """The command line; user errors print one line and exit 2 (`--debug`: traceback)."""
    return run_tool(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppi_dist.push", description=__doc__.split("\n")[0]
    )
    parser.add_argument("folder", help="folder written by save_for_hub / the trainer")
    parser.add_argument("repo_id", help="Hub repository, e.g. user/secai-bernett")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", help="branch to push to (created if missing)")
    parser.add_argument("--commit_message", default="Upload SE-CAI model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = push_folder(
        args.folder,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    print(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

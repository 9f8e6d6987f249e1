"""Upload a saved SE-CAI folder to the Hugging Face Hub.

    ppi-dist push outputs/run/model user/secai-bernett [--private] [--revision BRANCH]

The token comes from the HF_TOKEN environment variable or `hf auth login`; there is no
token argument on purpose (command lines end up in shell history and process lists).
"""

from __future__ import annotations

import argparse

from ppi_dist.cli.boundary import command
from ppi_dist.cli.flags import Parser
from ppi_dist.hub.push import push_folder


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist push", description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="folder written by save_for_hub / the trainer")
    parser.add_argument("repo_id", help="Hub repository, e.g. user/secai-bernett")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", help="branch to push to (created if missing)")
    parser.add_argument("--commit_message", default="Upload SE-CAI model")
    return parser


def run(args: argparse.Namespace) -> int:
    url = push_folder(
        args.folder,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    print(url)
    return 0


main = command(build_parser, run, log=True)

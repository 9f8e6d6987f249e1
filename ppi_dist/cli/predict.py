"""Score protein pairs with a saved SE-CAI model: a pair file, all-vs-all, or set A x set B.

    ppi-dist predict --model runs/best --fasta proteome.fasta --out scores.tsv
    ppi-dist predict --model runs/best --fasta a.fasta --fasta_b b.fasta --out x.parquet
    ppi-dist predict --model runs/best --pairs test.tsv --fasta seqs.fasta --out p.tsv
    ppi-dist predict --model runs/best --fasta proteome.fasta --screen 0.05 --out s.tsv
    accelerate launch -m ppi_dist.predict ...          # several GPUs: each takes a slice

Each distinct protein goes through the encoder once; the output is streamed and resumable
(`ppi_dist.inference.predict`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from accelerate import PartialState

from ppi_dist.cli.boundary import command
from ppi_dist.cli.encoding import add_encoding_flags, windowing_from_flags
from ppi_dist.cli.flags import Parser, at_least, fraction, open_fraction, positive, probability
from ppi_dist.errors import UserError
from ppi_dist.files import check_output_folder, writing_to
from ppi_dist.hub.loading import load_model
from ppi_dist.inference.cache import DEFAULT_MEMORY_LIMIT
from ppi_dist.inference.predict import PredictFiles, PredictOptions, PredictRun, predict
from ppi_dist.inference.scoring import CHUNK_PAIRS, Ranks


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ppi-dist predict",
        description="Score protein pairs with a saved SE-CAI model (each protein encoded once).",
    )
    parser.add_argument(
        "--model", required=True, help="saved SE-CAI folder, or a Hub repo id (downloaded)"
    )
    parser.add_argument("--revision", default=None, help="Hub revision of --model")
    parser.add_argument("--pairs", help="pair file (tsv/csv/jsonl/parquet; label optional)")
    parser.add_argument("--fasta", help="sequences; alone (no --pairs): score all-vs-all")
    parser.add_argument("--fasta_b", help="second set: score every pair of --fasta x --fasta_b")
    parser.add_argument("--out", required=True, help="output .tsv or .parquet")
    parser.add_argument("--include_self", action="store_true", help="also score (p, p)")
    parser.add_argument("--top_k", type=at_least(1), help="keep only the k highest probabilities")
    parser.add_argument(
        "--min_prob",
        type=probability,
        help="keep only pairs at least this likely (the probability column: calibrated when "
        "the model has a calibration)",
    )
    parser.add_argument(
        "--prior",
        type=open_fraction,
        help="share of interacting pairs the probabilities hold at (e.g. 0.01 for a proteome "
        "screen; default: the calibration's own, 0.5)",
    )
    parser.add_argument(
        "--threshold",
        type=probability,
        help="decision threshold on the raw score, the scale the model's own was chosen on "
        "(default: the model's saved one)",
    )
    parser.add_argument(
        "--screen",
        type=fraction(zero=False, one=True),
        metavar="FRACTION",
        help="rank every pair by the model's first pass and score only the best FRACTION by "
        "cross-attention (e.g. 0.05 for a proteome; the others keep their first-pass score)",
    )
    parser.add_argument("--cache_dir", help="keep the per-residue states here (reused if valid)")
    parser.add_argument(
        "--cache_dtype", default="float16", choices=["float16", "bfloat16", "float32"]
    )
    parser.add_argument(
        "--memory_limit_gb",
        type=positive,
        default=DEFAULT_MEMORY_LIMIT / 2**30,
        help="in-memory cache limit; above it the states go to disk",
    )
    parser.add_argument("--tile", type=at_least(1), default=64, help="proteins per all-vs-all tile")
    parser.add_argument(
        "--chunk_pairs", type=at_least(1), default=CHUNK_PAIRS, help="pair-file rows per chunk"
    )
    parser.add_argument(
        "--max_tokens",
        type=at_least(1),
        default=65536,
        help="pair batch budget: pairs x (longest A + longest B)",
    )
    parser.add_argument(
        "--max_chunks", type=at_least(1), help="stop after this many chunks (rerun to resume)"
    )
    parser.add_argument("--overwrite", action="store_true", help="discard output and progress")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--allow_encoder_mismatch",
        action="store_true",
        help="score though the encoder's weights changed",
    )
    add_encoding_flags(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.cache_dir is not None:  # before the model loads; a valid cache need not be writable
        check_output_folder(args.cache_dir, "--cache_dir", writable=False)
    # A full disk or read-only folder under --out: one line naming the path; the progress
    # files written so far stay, so the same command resumes.
    with writing_to(args.out, then="; rerun the same command to resume"):
        return score(args)


def score(args: argparse.Namespace) -> int:
    # cpu=True without CUDA: otherwise `accelerate launch` on CPU starts independent
    # single-process runs instead of one gloo group.
    state = PartialState(cpu=not torch.cuda.is_available())
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != state.num_processes:  # untied processes would all write rank 0's part
        raise UserError(f"launched {launched} processes but got a group of {state.num_processes}")
    allow = args.allow_encoder_mismatch
    model = load_model(args.model, revision=args.revision, allow_encoder_mismatch=allow)
    model = model.to(state.device)
    windowing = windowing_from_flags(model, args)
    options = PredictOptions(
        threshold=args.threshold,
        prior=args.prior,
        top_k=args.top_k,
        min_prob=args.min_prob,
        include_self=args.include_self,
        tile=args.tile,
        chunk_pairs=args.chunk_pairs,
        max_residues=windowing.max_residues,
        window_overlap=windowing.overlap,
        windows=windowing.mode,
        cache_dtype=args.cache_dtype,
        screen=args.screen,
    )
    several = state.num_processes > 1
    ranks = Ranks(
        state.process_index,
        state.num_processes,
        barrier=state.wait_for_everyone if several else None,
    )
    summary = predict(
        model,
        PredictFiles(args.out, pairs=args.pairs, fasta=args.fasta, fasta_b=args.fasta_b),
        options,
        PredictRun(
            ranks=ranks,
            cache_dir=args.cache_dir,
            memory_limit=int(args.memory_limit_gb * 2**30),
            overwrite=args.overwrite,
            max_chunks=args.max_chunks,
            progress=not args.no_progress and state.is_main_process,
            max_tokens=args.max_tokens,
        ),
    )
    if state.is_main_process:
        print(json.dumps(summary))
        if not summary["complete"]:
            print("stopped early; rerun the same command to resume", file=sys.stderr)
    return 0


main = command(build_parser, run, log=True)

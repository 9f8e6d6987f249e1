"""Which residues of A and B drive a pair's score, from a saved model.

    ppi-dist explain --model outputs/run/model --fasta seqs.fasta --a P1 --b P2 --out explain/
    ppi-dist explain --model outputs/run/model --fasta seqs.fasta --pairs pairs.tsv --out explain/

Per pair, a folder `NNNN_A_B/` with `hotspots.tsv` (side, protein, position, residue and
each hotspot score) and `attention.png` (both attention maps with the hotspot profiles and
the top residues labelled); `explanations.tsv` lists every pair with its probability and
top residues, which are also printed. The probability is `predict`'s for the same pair
(the same scoring path; calibrated when the model ships a calibration, the raw score
beside it); the hotspot scores are defined in `ppi_dist.inference.explain`.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import torch

from ppi_dist.cli.boundary import command
from ppi_dist.cli.encoding import add_encoding_flags, windowing_from_flags
from ppi_dist.cli.flags import Parser, at_least
from ppi_dist.data.fasta import read_fasta
from ppi_dist.data.pairs import Pair, PairSource, sequences_of
from ppi_dist.errors import UserError
from ppi_dist.evaluation.attention_plots import plot_explanation
from ppi_dist.files import check_output_folder, writing_to
from ppi_dist.hub.loading import load_model
from ppi_dist.inference.cache import EmbeddingCache
from ppi_dist.inference.explain import (
    DEFAULT_SCORE,
    HOTSPOT_SCORES,
    PairExplanation,
    explain_pair,
)
from ppi_dist.inference.scoring import encode_proteins
from ppi_dist.models.secai import SECAI

SUMMARY_NAME = "explanations.tsv"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist explain", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="saved SE-CAI folder or Hub repo id")
    parser.add_argument("--fasta", help="sequences (unless --pairs has them inline)")
    parser.add_argument("--a", help="identifier of protein A in --fasta")
    parser.add_argument("--b", help="identifier of protein B in --fasta")
    parser.add_argument("--pairs", help="pair file: every pair in it (label optional)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--top_k", type=at_least(1), default=10, help="top residues printed per protein"
    )
    parser.add_argument("--score", default=DEFAULT_SCORE, choices=HOTSPOT_SCORES)
    parser.add_argument("--no_plots", action="store_true", help="TSVs only")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier output")
    parser.add_argument(
        "--allow_encoder_mismatch", action="store_true", help="load though the encoder changed"
    )
    add_encoding_flags(parser)
    return parser


def read_pairs_to_explain(args: argparse.Namespace) -> list[Pair]:
    if args.pairs is not None:
        if args.a is not None or args.b is not None:
            raise UserError("give --pairs FILE or --a ID --b ID, not both")
        source = PairSource(args.pairs, args.fasta, allow_contradictory_labels=True)
        pairs = list(source.pair_rows())
        if not pairs:
            raise UserError(f"{args.pairs}: no pairs to explain")
        return pairs
    if args.a is None or args.b is None or args.fasta is None:
        raise UserError("give --fasta F with --a ID --b ID, or --pairs FILE")
    sequences = read_fasta(args.fasta)
    for flag, protein in (("--a", args.a), ("--b", args.b)):
        if protein not in sequences:
            raise UserError(f"{args.fasta}: {flag} {protein!r} is not in this FASTA")
    return [Pair(args.a, args.b, sequences[args.a], sequences[args.b], None)]


def folder_name(k: int, pair: Pair) -> str:
    """`0001_A_B`: numbered (identifiers may repeat or clash once cleaned), filesystem-safe."""
    clean = [re.sub(r"[^A-Za-z0-9._-]+", "_", p)[:60] for p in (pair.protein_a, pair.protein_b)]
    return f"{k:04d}_{clean[0]}_{clean[1]}"


def top_text(explanation: PairExplanation, side: str, k: int, score: str) -> str:
    """`K12:0.031 W40:0.027 ...`: residue, 1-based position and score, highest first."""
    top = explanation.top_residues(side, k, score)
    return " ".join(f"{residue}{position}:{value:.3f}" for position, residue, value in top)


def write_explanations(
    model: SECAI,
    cache: EmbeddingCache,
    pairs: list[Pair],
    out: Path,
    args: argparse.Namespace,
) -> Path:
    """Each pair's folder (hotspots.tsv, attention.png), its lines printed, and the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = ["protein_a\tprotein_b\tprobability\traw_score\ttop_a\ttop_b\tfolder"]
    for k, pair in enumerate(pairs, start=1):
        explanation = explain_pair(
            model, pair.protein_a, pair.sequence_a, pair.protein_b, pair.sequence_b, cache=cache
        )
        folder = out / folder_name(k, pair)
        folder.mkdir(exist_ok=True)
        explanation.write_tsv(folder / "hotspots.tsv")
        if not args.no_plots:
            plot_explanation(explanation, folder / "attention.png", score=args.score)
        tops = [top_text(explanation, side, args.top_k, args.score) for side in ("a", "b")]
        print(
            f"{pair.protein_a} x {pair.protein_b}: P(interact) {explanation.probability:.6f} "
            f"(raw score {explanation.raw_score:.6f})"
        )
        print(f"  top {args.top_k} of {pair.protein_a} ({args.score}): {tops[0]}")
        print(f"  top {args.top_k} of {pair.protein_b} ({args.score}): {tops[1]}")
        summary.append(
            f"{pair.protein_a}\t{pair.protein_b}\t{explanation.probability!r}\t"
            f"{explanation.raw_score!r}\t"
            f"{tops[0]}\t{tops[1]}\t{folder.name}"
        )
    (out / SUMMARY_NAME).write_text("\n".join(summary) + "\n")
    return out / SUMMARY_NAME


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_output_folder(out, "--out")  # before the model loads and proteins are encoded
    if (out / SUMMARY_NAME).exists():
        if not args.overwrite:
            raise FileExistsError(f"{out / SUMMARY_NAME} exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    pairs = read_pairs_to_explain(args)  # bad input refused before the model loads
    model = load_model(args.model, allow_encoder_mismatch=args.allow_encoder_mismatch)
    if model.cross_attention is None:
        raise UserError(f"{args.model}: a pooled-baseline model has no cross-attention to explain")
    model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    windowing = windowing_from_flags(model, args)
    print(f"encoding: {windowing.describe()}")
    calibration = model.calibration
    print(f"probability: {'raw score' if calibration is None else calibration.describe()}")
    cache = encode_proteins(model, sequences_of(pairs), windowing=windowing)
    with writing_to(out):
        summary = write_explanations(model, cache, pairs, out, args)
    print(summary)
    return 0


main = command(build_parser, run)

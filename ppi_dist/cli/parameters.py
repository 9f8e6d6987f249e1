"""SE-CAI's trainable parameters for an ESM-2 shape, counted on the meta device (no weights).

ppi-dist parameters --shape 650M --lora_r 8 [--lora_layers 8]
"""

from __future__ import annotations

import argparse

from ppi_dist.cli.boundary import command
from ppi_dist.cli.flags import Parser, at_least
from ppi_dist.models.config import SECAIConfig
from ppi_dist.models.parameters import parameter_report
from ppi_dist.models.shapes import SHAPES, encoder_config_of


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppi-dist parameters", description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=SHAPES, default="650M")
    parser.add_argument("--lora_r", type=at_least(1), default=8)
    parser.add_argument(
        "--lora_layers", type=at_least(1), default=None, help="LoRA on the last N layers only"
    )
    parser.add_argument(
        "--cross_attention_heads",
        type=at_least(1),
        default=None,
        help="default: the encoder's heads",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    shape = encoder_config_of(args.shape)
    heads = args.cross_attention_heads or shape["num_attention_heads"]
    config = SECAIConfig(
        encoder=None,
        encoder_config=shape,
        lora_r=args.lora_r,
        lora_layers=args.lora_layers,
        cross_attention_heads=heads,
    )
    print(f"SE-CAI on the ESM-2 {args.shape} shape")
    print(parameter_report(config))
    return 0


main = command(build_parser, run)

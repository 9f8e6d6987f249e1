"""The trainer's step with the cross-attention's projections gathered heads-first (the layout
before) and as the model gathers them now, alternating in one process on the same batches.

`SECAI.pair_path` projects each distinct protein once and gathers the projections per pair.
Before, `CrossAttention.project` split heads first, so the pairs gathered (U, heads, L, d_k)
views, and each gather's backward scattered into strided memory (on the CPU an
`aten::scatter_add_` per gather). Now it gathers (U, L, d) rows and splits heads after
(`HeadsFirst` below is the layout before, as a subclass swapped in for its rounds). The
step is `core.trainer_step` on `profile_step`'s batches (the trainer's flags decide the
model; `--freeze_encoder true` gives the frozen step on cache rows).

    python -m benchmarks.gather_layout --pairs outputs/synthetic_tiny/synthetic_data/train.tsv \
        --fasta outputs/synthetic_tiny/synthetic_data/sequences.fasta --encoder_shape tiny \
        --tiny_hidden 64 --tiny_layers 2 --tiny_heads 4 --cross_attention_heads 4 \
        --head_hidden 64 --head_dropout 0.1 --lora_r 8 --max_tokens 4096      # the default run's
    python -m benchmarks.gather_layout --freeze_encoder true --max_residues 256 \
        --max_tokens 32768 --sort_buffer 512                               # frozen 8M, Bernett
"""

from __future__ import annotations

import statistics
import sys

import torch
import torch.nn.functional as F

from benchmarks import core, profile_step
from ppi_dist.models.secai import CrossAttention


class HeadsFirst(CrossAttention):
    """The layout before: projections (U, heads, L, d_k), gathered so by the pair path."""

    def project(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(self.split_heads(w(states)) for w in (self.w_q, self.w_k, self.w_v))

    def attend(self, q, k, v, key_mask: torch.Tensor) -> torch.Tensor:
        pairs, _, length, _ = q.shape
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return attended.transpose(1, 2).reshape(pairs, length, -1)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args, config = profile_step.parse_args(["--warmup", "2", "--timed_steps", "8", *argv])
    device = torch.device(args.device)
    for line in core.machine_report(device):
        print(line)
    model = core.build_model(config, device)
    accelerator = core.benchmark_accelerator(config, device)
    hidden = model.encoder.config.hidden_size
    batches, prepare, _ = profile_step.make_batches(args, config, hidden, device)
    step = core.trainer_step(model, config, accelerator, prepare)
    warm, timed = batches[: args.warmup], batches[args.warmup : args.warmup + args.timed_steps]
    core.time_steps(step, warm, device)
    layouts = {"heads first (before)": HeadsFirst, "rows, heads split after (now)": CrossAttention}
    seconds: dict[str, list[float]] = {name: [] for name in layouts}
    rounds = 12
    for repeat in range(rounds):  # alternate, and swap which goes first: drift hits both
        for name in list(layouts)[:: 1 if repeat % 2 else -1]:
            model.cross_attention.__class__ = layouts[name]
            seconds[name].append(statistics.mean(core.time_steps(step, timed, device)))
    model.cross_attention.__class__ = CrossAttention
    mode = "frozen" if config.model.secai.freeze_encoder else "lora"
    print(f"{core.encoder_label(config)} {mode}, {len(timed)} batches x {rounds} rounds:")
    base = statistics.median(seconds["heads first (before)"])
    for name, runs in seconds.items():
        median = statistics.median(runs)
        spread = f"{min(runs) * 1e3:.1f}-{max(runs) * 1e3:.1f}"
        print(f"  {name}: {median * 1e3:.1f} ms per step (rounds {spread}), {base / median:.2f}x")


if __name__ == "__main__":
    main()

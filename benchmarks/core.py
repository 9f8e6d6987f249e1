"""What the benchmarks share: the trainer's configuration, model and step from its own
flags, the sampled pairs and their batches, and steps timed in turn on the same pairs (the
machine report and peak memory are the package's, `ppi_dist.training.machine`).

A benchmark runs from the repository root as `python -m benchmarks.NAME`; its own flags come
first, every other flag is the trainer's (`ppi_dist.training.recipes.load_config`).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

from ppi_dist.data.fasta import read_fasta, write_fasta
from ppi_dist.data.pairs import Pair, PairSource, sequences_of, write_pairs
from ppi_dist.data.sequences import random_residues
from ppi_dist.errors import ConfigError
from ppi_dist.evaluation.audit import read_pairs
from ppi_dist.models.secai import SECAI
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.distributed import resolve_mixed_precision
from ppi_dist.training.machine import PeakMemory, default_device
from ppi_dist.training.recipes import load_config
from ppi_dist.training.run import setup_encoder_states
from ppi_dist.training.sources import training_batches
from ppi_dist.training.step import BatchPreparation, StepResult, prepare_training, train_step

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BERNETT = SHARED / "data" / "bernett-gold"
DEFAULT_PAIRS = BERNETT / "train.tsv"
DEFAULT_FASTA = BERNETT / "sequences.fasta"
ENCODER_8M = SHARED / "models" / "esm2_t6_8M"
TRAINER_FLAGS = """\
Every other flag is the trainer's (python ppi_dist/train.py --help): --encoder or
--encoder_shape tiny|8M|...|650M, --freeze_encoder, --encoder_attention, --compile,
--max_tokens, --sort_buffer (also the number of pairs sampled), --seed, ..."""


def time_steps(
    step: Callable[[dict], object], batches: Iterable[dict], device: torch.device
) -> list[float]:
    """Seconds of `step` on each batch, from an idle device to an idle device."""
    seconds = []
    for batch in batches:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


@dataclass
class Timed:
    """One way of running the step: its untimed and timed batches, what each timed batch
    holds (`flops.BatchStats`), and its timings."""

    name: str
    step: Callable[[dict], object]
    warm: list[dict]
    measured: list[dict]
    stats: list = field(default_factory=list)
    warm_seconds: float = 0.0
    repeats: list[list[float]] = field(default_factory=list)
    peak_bytes: int = 0

    @property
    def seconds(self) -> float:
        """The median repeat's seconds for all the measured batches."""
        return statistics.median(sum(seconds) for seconds in self.repeats)


def warm_up(methods: list[Timed], device: torch.device) -> None:
    for method in methods:
        method.warm_seconds = sum(time_steps(method.step, method.warm, device))


def time_in_turn(methods: list[Timed], repeats: int, memory: PeakMemory) -> None:
    """All the methods in turn within every repeat, so that drift in the machine's speed
    hits them alike."""
    for repeat in range(repeats):
        for method in methods:
            memory.reset()
            method.repeats.append(time_steps(method.step, method.measured, memory.device))
            method.peak_bytes = max(method.peak_bytes, memory.peak_bytes())
        print(f"  repeat {repeat + 1}/{repeats} done", flush=True)


def _as_flags(settings: Mapping[str, object]) -> list[str]:
    return [
        word
        for name, value in settings.items()
        for word in (f"--{name}", str(value).lower() if isinstance(value, bool) else str(value))
    ]


def benchmark_config(flags: list[str], device: torch.device, **defaults: object) -> TrainConfig:
    """The trainer's configuration from its flags, after the benchmarks' defaults (a flag
    given wins): the shared 8M, no loader workers, LoRA alpha 2 r, checkpointing on CUDA
    unless frozen, then `defaults` (flag name -> value)."""
    # The batches are listed once before timing: no loader worker processes.
    chosen = {"encoder": ENCODER_8M, "data_workers": 0, **defaults}
    secai = load_config([*_as_flags(chosen), *flags]).model.secai
    follow = {
        "lora_alpha": 2 * secai.lora_r,
        "activation_checkpointing": device.type == "cuda" and not secai.freeze_encoder,
    }
    config = load_config([*_as_flags({**follow, **chosen}), *flags])
    if config.optimization.mixed_precision == "fp16":
        raise ConfigError("the benchmarks run bf16 or fp32 (no loss scaling): not fp16")
    return config


def trainer_config(
    parser: argparse.ArgumentParser, flags: list[str], device: torch.device, **defaults: object
) -> TrainConfig:
    """`benchmark_config`, a wrong trainer flag reported as `parser`'s usage error."""
    try:
        return benchmark_config(flags, device, **defaults)
    except ConfigError as error:
        parser.error(str(error))


def step_parser(doc: str) -> argparse.ArgumentParser:
    """The flags of a benchmark that times training steps on sampled pairs."""
    parser = argparse.ArgumentParser(
        description=doc,
        epilog=TRAINER_FLAGS,
        formatter_class=argparse.RawTextHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--pairs", default=str(DEFAULT_PAIRS), help="pair file to sample from")
    parser.add_argument("--fasta", default=str(DEFAULT_FASTA))
    parser.add_argument(
        "--fixed_length", type=int, help="random sequences of this many residues instead"
    )
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def mixed_precision(config: TrainConfig, device: torch.device) -> str:
    """ "bf16" or "no", with "auto" resolved as the trainer resolves it."""
    return resolve_mixed_precision(config.optimization.mixed_precision, device.type == "cuda")


def encoder_label(config: TrainConfig) -> str:
    return config.model.encoder_shape or str(config.model.secai.encoder)


def build_model(config: TrainConfig, device: torch.device) -> SECAI:
    """SE-CAI as the trainer builds it (seeded), in training mode on `device`."""
    torch.manual_seed(config.optimization.seed)
    with device:  # built in place: a 650M random init on the CPU alone takes a minute
        model = SECAI(config.model.secai_config())
    return model.to(device).train()


@dataclass
class TrainerStep:
    """The trainer's step on `model`: its encoder's states set up as the trainer sets them up
    for `pairs` (a frozen encoder's embedding cache, or with LoRA on the top layers the trunk
    cache, in `config`'s output_dir; none without `pairs`), `prepare_training` (no schedule),
    then per batch `BatchPreparation` and `train_step`."""

    model: torch.nn.Module
    config: TrainConfig
    device: torch.device
    pairs: list[Pair] | None = None

    def __post_init__(self) -> None:
        optimization = self.config.optimization
        precision = mixed_precision(self.config, self.device)
        self.accelerator = Accelerator(cpu=self.device.type == "cpu", mixed_precision=precision)
        cache = trunk = None
        if self.pairs is not None:
            every_split = [self.pairs]
            cache, trunk = setup_encoder_states(
                self.config, self.model, every_split, self.accelerator
            )
        self.prepared = prepare_training(self.model, optimization, self.accelerator)
        swap = None
        if optimization.swap_augmentation:
            swap = torch.Generator().manual_seed(optimization.seed)
        self.prepare = BatchPreparation(self.accelerator.device, cache, trunk, swap)

    def __call__(self, batch: dict) -> StepResult:
        return self.train(self.prepare(batch))

    def train(self, prepared: dict) -> StepResult:
        optimization, model = self.config.optimization, self.prepared.model
        optimizer = self.prepared.optimizer
        return train_step(model, prepared, optimizer, self.accelerator, optimization, False)

    def batches(self, source: PairSource) -> list[dict]:
        """Every training batch of `source` as the trainer's loader makes them at `config`'s
        budget: cache rows with a frozen encoder's cache, tokens otherwise."""
        cache, trunk = self.prepare.cache, self.prepare.trunk
        return list(
            training_batches(
                source,
                self.config,
                self.accelerator,
                cache.index if cache is not None else None,
                trunk.index if trunk is not None else None,
            )
        )


def sample_pairs(
    pairs: str | Path, fasta: str | Path, count: int, seed: int, fixed_length: int | None = None
) -> tuple[list[Pair], dict[str, str]]:
    """`count` pairs drawn (seeded) from a pair file, their sequences filled in from `fasta`
    (or random residues of `fixed_length`), and those sequences by protein; with
    `fixed_length` and no pair file, pairs of random proteins, each in about 3 pairs."""
    rng = random.Random(seed)
    if fixed_length is not None and not Path(pairs).is_file():
        names = [f"S{i}" for i in range(max(2, 2 * count // 3))]
        rows = [
            Pair(rng.choice(names), rng.choice(names), label=float(rng.randint(0, 1)))
            for _ in range(count)
        ]
    else:
        every = read_pairs(pairs)
        rows = rng.sample(every, min(count, len(every)))
    needed = sorted({p.protein_a for p in rows} | {p.protein_b for p in rows})
    if fixed_length is not None:
        sequences = {name: random_residues(rng, fixed_length) for name in needed}
    else:
        every_sequence = read_fasta(fasta)
        sequences = {name: every_sequence[name] for name in needed}
    filled = [
        p._replace(sequence_a=sequences[p.protein_a], sequence_b=sequences[p.protein_b])
        for p in rows
    ]
    return filled, sequences


def sampled(args: argparse.Namespace, config: TrainConfig) -> list[Pair]:
    """The flags' sample: as many pairs as the trainer's --sort_buffer, its --seed."""
    count, seed = config.data.sort_buffer, config.optimization.seed
    return sample_pairs(args.pairs, args.fasta, count, seed, args.fixed_length)[0]


def write_pair_files(directory: Path, pairs: list[Pair]) -> tuple[Path, Path]:
    """The pairs as a pair file + FASTA in `directory`."""
    pair_path = write_pairs(directory / "pairs.tsv", pairs)
    return pair_path, write_fasta(directory / "sequences.fasta", sequences_of(pairs))


@contextlib.contextmanager
def sample_source(pairs: list[Pair], config: TrainConfig) -> Iterator[PairSource]:
    """The pairs as the trainer reads them: a validated `PairSource` over temporary files, in
    a folder that is `config`'s output_dir meanwhile (where a run's caches are built)."""
    with tempfile.TemporaryDirectory() as folder:
        pair_path, fasta_path = write_pair_files(Path(folder), pairs)
        max_residues = config.model.secai.max_residues
        source = PairSource(pair_path, fasta=fasta_path, max_residues=max_residues)
        source.validate()
        config.run.output_dir = folder
        yield source

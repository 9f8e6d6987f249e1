"""Train SE-CAI: `accelerate launch ppi_dist/train.py [--config recipe.yaml] [--key value ...]`.

One readable loop, every distributed step in sight (in the manner of the transformers
`run_*_no_trainer.py` examples):

    config -> Accelerator -> pair batches of this rank -> SE-CAI + LoRA -> AdamW, schedule
    -> loop: forward, focal loss, one all-reduce of (loss, pairs, non-finite, stop), backward,
             clip, step; evaluate (predictions gathered from every rank, threshold searched
             on the whole set); checkpoint every N steps and on SIGTERM/SIGINT
    -> final: best weights, validation threshold, test metrics, model folder, plots, Hub.

The same script runs on one CPU, one GPU, a DDP node, or DeepSpeed ZeRO-2 over many nodes:
the accelerate config decides (see accelerate_configs/).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

# Run as a file (`accelerate launch ppi_dist/train.py`): make the package importable.
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DistributedType,
    InitProcessGroupKwargs,
    broadcast_object_list,
    gather_object,
    set_seed,
)
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_scheduler

from ppi_dist import checkpoint as ckpt
from ppi_dist.config import ConfigError, TrainConfig, load_config
from ppi_dist.data import Columns, DataError, PairBatches, PairSource
from ppi_dist.embeddings import EmbeddingCache, sequence_digest
from ppi_dist.loss import focal_loss
from ppi_dist.metrics import ThresholdResult, evaluate_at, search_threshold
from ppi_dist.model import SECAI
from ppi_dist.sequences import crop
from ppi_dist.synthetic import synthetic_task_paths, write_synthetic_task


class NonFiniteLossError(RuntimeError):
    """The loss was NaN or infinite on some rank."""


class StopRequested:
    """Set by SIGTERM/SIGINT (cluster pre-emption, Ctrl-C); acted on at the next step."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)

    def _handler(self, signum, _frame) -> None:
        self.requested = True


# ---- set-up ---------------------------------------------------------------------------


def make_accelerator(config: TrainConfig) -> Accelerator:
    mixed_precision = config.mixed_precision
    if mixed_precision == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        mixed_precision = "bf16" if bf16 else "no"
    report_to = {"none": None, "all": "all"}.get(config.report_to, [config.report_to])
    # CPU process groups need gloo (DeepSpeed's default, nccl, has no CPU support).
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    handlers = (
        [InitProcessGroupKwargs(backend="gloo")]
        if distributed and not torch.cuda.is_available()
        else []
    )
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=report_to,
        project_dir=config.output_dir,
        kwargs_handlers=handlers,
    )
    if distributed and accelerator.num_processes == 1:
        raise ConfigError(
            f"launched as {os.environ['WORLD_SIZE']} processes but Accelerate formed no process "
            f"group (each would train alone); on CPU launch with ACCELERATE_USE_CPU=true"
        )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        # Batches are token-budgeted, not a fixed number of pairs; DeepSpeed only needs an
        # integer here for its bookkeeping, since we do not hand it a dataloader.
        ds["train_micro_batch_size_per_gpu"] = 1
        ds["gradient_clipping"] = config.max_grad_norm
        if config.nonfinite_loss == "skip":
            raise ConfigError(
                "nonfinite_loss: skip is not supported with DeepSpeed (its backward steps the "
                "optimizer); use stop"
            )
    return accelerator


def make_batches(config: TrainConfig, accelerator: Accelerator) -> dict[str, PairBatches]:
    """Validated sources and this rank's batch iterators for train/valid(/test)."""
    files = {"train": config.train_file, "valid": config.valid_file, "test": config.test_file}
    fasta = config.fasta
    if config.train_file is None:  # the embedded default: generate the synthetic task
        # One writer per machine (the folder may be node-local); the others wait, then read.
        out_dir = Path(config.output_dir) / "synthetic_data"
        if accelerator.is_local_main_process:
            write_synthetic_task(
                out_dir,
                seed=config.seed,
                train_pairs=config.synthetic_train_pairs,
                eval_pairs=config.synthetic_eval_pairs,
            )
        accelerator.wait_for_everyone()
        paths = synthetic_task_paths(out_dir)
        files = {split: str(paths[split]) for split in ("train", "valid", "test")}
        fasta = str(paths["fasta"])
    columns = Columns(
        protein_a=config.column_a, protein_b=config.column_b, label=config.column_label
    )
    batches = {}
    for split, path in files.items():
        if path is None:
            continue
        source = PairSource(
            path,
            fasta,
            columns=columns,
            labeled=True,
            max_residues=config.max_residues,
            skip_bad_rows=config.skip_bad_rows,
            split=split,
        )
        report = source.validate()
        accelerator.print(f"{split}: {report.summary()}")
        training = split == "train"
        batches[split] = PairBatches(
            source,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            seed=config.seed,
            training=training,
            max_tokens=config.max_tokens
            if training
            else (config.eval_max_tokens or 2 * config.max_tokens),
            max_pairs=config.max_pairs,
            batch_size=config.batch_size,
            sort_buffer=config.sort_buffer,
            shuffle_buffer=config.shuffle_buffer,
        )
    return batches


def make_optimizer(model: SECAI, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with its own learning rate for LoRA and for cross-attention + head.

    No weight decay on biases and normalisation weights (1-d tensors), as usual.
    """
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "lora" if "lora_" in name else "head"
        groups.setdefault((part, param.ndim > 1), []).append(param)
    rates = {"lora": config.learning_rate_lora, "head": config.learning_rate_head}
    return torch.optim.AdamW(
        [
            {"params": params, "lr": rates[part], "weight_decay": config.weight_decay * decay}
            for (part, decay), params in sorted(groups.items())
        ]
    )


def open_embedding_cache(
    config: TrainConfig, model: SECAI, batches: dict[str, PairBatches], accelerator: Accelerator
) -> EmbeddingCache:
    """Frozen encoder: every protein of every split encoded once, by the main process.

    A cache already in the folder is reused when it holds every protein needed, from the
    same encoder weights and crop (e.g. one cache of a whole proteome for several splits).
    """
    directory = Path(config.embedding_cache or Path(config.output_dir) / "embedding_cache")
    if accelerator.is_main_process:
        sequences: dict[str, str] = {}
        for split in batches.values():
            for row in split.source.pair_rows():
                sequences[row.protein_a] = row.sequence_a
                sequences[row.protein_b] = row.sequence_b
        started = time.perf_counter()
        cache = _covering_cache(directory, model, sequences, config.max_residues)
        if cache is None:
            cache = EmbeddingCache.build(
                model, sequences, directory=directory, max_residues=config.max_residues,
                device=accelerator.device, progress=True,
            )  # fmt: skip
        accelerator.print(
            f"embedding cache: {len(cache):,} proteins, {cache.nbytes / 2**20:,.0f} MiB in "
            f"{directory} ({time.perf_counter() - started:.0f} s)"
        )
    accelerator.wait_for_everyone()
    return EmbeddingCache.open(directory)


def _covering_cache(
    directory: Path, model: SECAI, sequences: dict[str, str], max_residues: int
) -> EmbeddingCache | None:
    try:
        cache = EmbeddingCache.open(directory)
    except (FileNotFoundError, ValueError):
        return None
    if cache.max_residues != max_residues or not cache.matches(model):
        return None
    digest_of = dict(zip(cache.ids, cache.digests, strict=True))
    for protein, sequence in sequences.items():
        if digest_of.get(protein) != sequence_digest(crop(sequence, max_residues)):
            return None
    return cache


def with_cached_states(batch: dict, cache: EmbeddingCache, device: torch.device) -> dict:
    """Swap a batch's tokens for its proteins' cached per-residue states."""
    proteins = list(dict.fromkeys(batch["protein_a"] + batch["protein_b"]))
    row = {protein: i for i, protein in enumerate(proteins)}
    states, states_mask = cache.get(proteins, device=device)
    cached = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
    cached["index_a"] = torch.tensor([row[p] for p in batch["protein_a"]], device=device)
    cached["index_b"] = torch.tensor([row[p] for p in batch["protein_b"]], device=device)
    return {**cached, "states": states, "states_mask": states_mask}


# ---- evaluation -----------------------------------------------------------------------


@torch.no_grad()
def predict(
    model: SECAI, batches: PairBatches, accelerator: Accelerator, cache: EmbeddingCache | None
) -> dict:
    """Probabilities of every pair of a split, gathered from all ranks (padding dropped).

    Runs the unwrapped model: no DDP buffer broadcasts, so ranks need not stay in step.
    """
    model.eval()
    batches.set_epoch(0)
    rows: list[tuple[str, str, float, float]] = []
    for batch in batches:
        keep = batch["weight"] > 0
        if not keep.any():
            continue
        batch = _tensors_to(batch, accelerator.device)
        if cache is not None:
            batch = with_cached_states(batch, cache, accelerator.device)
        with accelerator.autocast():
            logits = model(**batch)
        probabilities = torch.sigmoid(logits.float()).cpu()
        for i in torch.nonzero(keep).flatten().tolist():
            rows.append(
                (
                    batch["protein_a"][i],
                    batch["protein_b"][i],
                    float(probabilities[i]),
                    float(batch["labels"][i]),
                )
            )
    model.train()
    gathered = gather_object(rows) if accelerator.num_processes > 1 else rows
    gathered.sort()  # the same order on every rank and in a single process
    return {
        "protein_a": [r[0] for r in gathered],
        "protein_b": [r[1] for r in gathered],
        "scores": torch.tensor([r[2] for r in gathered], dtype=torch.float64).numpy(),
        "labels": torch.tensor([r[3] for r in gathered]).long().numpy(),
    }


def choose_threshold(
    predictions: dict, config: TrainConfig, accelerator: Accelerator
) -> ThresholdResult:
    """Threshold search on the gathered validation set; rank 0's result is used everywhere."""
    result = search_threshold(
        predictions["scores"],
        predictions["labels"],
        weights=config.score_weights,
        grid=config.threshold_grid,
    )
    if accelerator.num_processes > 1:
        shared = [result if accelerator.is_main_process else None]
        result = broadcast_object_list(shared, from_process=0)[0]
    return result


def metric_of(result: ThresholdResult, name: str) -> float:
    return {"score": result.score, "aupr": result.aupr, "auroc": result.auroc, "mcc": result.mcc}[
        name
    ]


def write_predictions(path: Path, predictions: dict, threshold: float) -> None:
    with open(path, "w") as handle:
        handle.write("protein_a\tprotein_b\tprobability\tpredicted\tlabel\n")
        for a, b, s, y in zip(
            predictions["protein_a"],
            predictions["protein_b"],
            predictions["scores"],
            predictions["labels"],
            strict=True,
        ):
            handle.write(f"{a}\t{b}\t{s:.6f}\t{int(s >= threshold)}\t{y}\n")


# ---- checkpoints ----------------------------------------------------------------------


def save_checkpoint(
    root: Path, step: int, state: dict, model, optimizer, scheduler, accelerator, best
) -> Path:
    """Everything to continue exactly; never writes non-finite weights."""
    unwrapped = accelerator.unwrap_model(model)
    trainables = ckpt.trainable_tensors(unwrapped)
    if not ckpt.all_finite(trainables):
        raise NonFiniteLossError(f"step {step}: weights are not finite; no checkpoint written")
    directory = ckpt.step_dir(root, step)
    if accelerator.is_main_process:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ckpt.COMPLETE).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        model.save_checkpoint(str(directory / "deepspeed"), exclude_frozen_parameters=True)
    elif accelerator.is_main_process:
        tensors, groups = ckpt.optimizer_to_files(optimizer.optimizer)
        save_file(tensors, directory / "optimizer.safetensors")
        ckpt.write_json(directory / "optimizer.json", groups)
    ckpt.save_rng(directory, accelerator.process_index)
    if accelerator.is_main_process:
        save_file(trainables, directory / "trainable.safetensors")
        if best["tensors"] is not None:
            save_file(best["tensors"], directory / "best.safetensors")
        ckpt.write_json(
            directory / "trainer_state.json",
            {
                **state,
                "scheduler": scheduler.state_dict(),
                "best": {k: v for k, v in best.items() if k != "tensors"},
            },
        )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (directory / ckpt.COMPLETE).touch()
        ckpt.rotate(root, state["keep_checkpoints"])
    accelerator.wait_for_everyone()
    return directory


def load_checkpoint(directory: Path, model, optimizer, scheduler, accelerator) -> dict:
    if not (directory / ckpt.COMPLETE).is_file():
        raise FileNotFoundError(f"{directory}: not a completed checkpoint")
    state = json.loads((directory / "trainer_state.json").read_text())
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        model.load_checkpoint(
            str(directory / "deepspeed"),
            load_module_strict=False,
            load_optimizer_states=True,
            load_lr_scheduler_states=False,
        )
    else:
        groups = json.loads((directory / "optimizer.json").read_text())
        tensors = load_file(directory / "optimizer.safetensors")
        optimizer.optimizer.load_state_dict(ckpt.optimizer_from_files(tensors, groups))
    # After DeepSpeed's own load, so our trainables (BatchNorm statistics included) win.
    unwrapped = accelerator.unwrap_model(model)
    ckpt.load_trainable_tensors(unwrapped, load_file(directory / "trainable.safetensors"))
    scheduler.load_state_dict(state["scheduler"])
    ckpt.load_rng(directory, accelerator.process_index)
    best_path = directory / "best.safetensors"
    state["best"]["tensors"] = load_file(best_path) if best_path.is_file() else None
    return state


# ---- the run --------------------------------------------------------------------------


def _tensors_to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _swap(batch: dict, generator: torch.Generator) -> dict:
    """Swap A and B of a random half of the pairs (augmentation for order-dependent heads)."""
    flip = torch.rand(batch["index_a"].shape, generator=generator) < 0.5
    a, b = batch["index_a"], batch["index_b"]
    return {**batch, "index_a": torch.where(flip, b, a), "index_b": torch.where(flip, a, b)}


def train(config: TrainConfig) -> dict:
    """Run training; returns the final metrics (validation, and test when given)."""
    accelerator = make_accelerator(config)
    output_dir = Path(config.output_dir)
    checkpoints = output_dir / "checkpoints"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.print(
        f"ppi_dist: {accelerator.num_processes} process(es), "
        f"{accelerator.distributed_type.value}, {accelerator.mixed_precision} precision"
    )
    accelerator.print("config: " + json.dumps(config.to_dict(), default=str))
    set_seed(config.seed)

    batches = make_batches(config, accelerator)
    model = SECAI(config.model_config())
    cache = (
        open_embedding_cache(config, model, batches, accelerator) if config.freeze_encoder else None
    )
    optimizer = make_optimizer(model, config)
    micro_per_epoch = batches["train"].count_batches()
    steps_per_epoch = max(micro_per_epoch // config.gradient_accumulation_steps, 1)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    # Created on the plain optimizer and stepped by us once per optimiser step (not
    # `prepare`d: Accelerate would step it once per process).
    scheduler = get_scheduler(
        config.lr_schedule,
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped: SECAI = accelerator.unwrap_model(model)
    trainable, total = (
        sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
        sum(p.numel() for p in unwrapped.parameters()),
    )
    accelerator.print(
        f"model: {trainable:,} trainable of {total:,} parameters "
        f"({100 * trainable / total:.3f}%); {steps_per_epoch} steps/epoch, {total_steps} steps"
    )

    step, epoch = 0, 0
    best = {
        "metric": config.best_metric,
        "value": -math.inf,
        "step": None,
        "threshold": 0.5,
        "tensors": None,
    }
    if config.resume_from:
        directory = (
            ckpt.latest_checkpoint(checkpoints)
            if config.resume_from == "latest"
            else Path(config.resume_from)
        )
        if directory is None:
            accelerator.print(f"resume: no checkpoint under {checkpoints}; starting fresh")
        else:
            state = load_checkpoint(directory, model, optimizer, scheduler, accelerator)
            step, epoch, best = state["step"], state["epoch"], state["best"]
            batches["train"].load_state_dict(state["data"])
            accelerator.print(f"resumed from {directory} at step {step}")

    tracker_config = {
        k: (v if isinstance(v, int | float | str | bool) else str(v))
        for k, v in config.to_dict().items()
    }
    accelerator.init_trackers("ppi_dist", config=tracker_config)
    swap_generator = torch.Generator().manual_seed(config.seed + accelerator.process_index)
    progress = tqdm(
        total=total_steps,
        initial=step,
        desc="train",
        dynamic_ncols=True,
        disable=not accelerator.is_local_main_process,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,  # logs files get a line per 10 s
    )
    train_log = output_dir / "train_log.jsonl"

    def say(message: str) -> None:
        """One console line from the main process, above the progress bar."""
        if accelerator.is_main_process:
            progress.write(message)

    checkpoint_every = config.checkpoint_every or steps_per_epoch
    eval_every = config.eval_every or steps_per_epoch
    window = {"loss": 0.0, "pairs": 0.0, "micro": 0, "start": time.perf_counter()}

    def state_now() -> dict:
        return {
            "step": step,
            "epoch": epoch,
            "data": batches["train"].state_dict(),
            "config": config.to_dict(),
            "keep_checkpoints": config.keep_checkpoints,
        }

    def evaluate_now() -> ThresholdResult:
        nonlocal best
        average_batchnorm_statistics(unwrapped, accelerator)
        predictions = predict(unwrapped, batches["valid"], accelerator, cache)
        result = choose_threshold(predictions, config, accelerator)
        accelerator.log({f"valid/{k}": v for k, v in result.summary().items()}, step=step)
        value = metric_of(result, config.best_metric)
        if value > best["value"]:
            best = {
                "metric": config.best_metric,
                "value": value,
                "step": step,
                "threshold": result.threshold,
                "tensors": ckpt.trainable_tensors(unwrapped),
            }
        say(f"step {step} validation: {result.describe()}")
        return result

    # From here on SIGTERM/SIGINT mean "checkpoint and exit 0"; before, they just stop.
    stop = StopRequested()
    model.train()
    while step < total_steps:
        batches["train"].set_epoch(epoch)
        for batch in batches["train"]:
            batch = _tensors_to(batch, accelerator.device)
            if cache is not None:
                batch = with_cached_states(batch, cache, accelerator.device)
            if config.swap_augmentation:
                batch = _swap(batch, swap_generator)
            with accelerator.accumulate(model):
                logits = model(**batch)
                loss = focal_loss(
                    logits,
                    batch["labels"],
                    config.focal_gamma,
                    config.focal_alpha,
                    weight=batch["weight"],
                )
                # One all-reduce carries what every rank must agree on before backward.
                flags = torch.tensor(
                    [
                        float(not torch.isfinite(loss)),
                        float(stop.requested),
                        loss.detach().float().nan_to_num() * batch["weight"].sum(),
                        batch["weight"].sum(),
                    ],
                    device=accelerator.device,
                )
                flags = accelerator.reduce(flags, reduction="sum")
                nonfinite, stopping = flags[0].item() > 0, flags[1].item() > 0
                if nonfinite and config.nonfinite_loss == "stop":
                    raise NonFiniteLossError(
                        f"non-finite loss at step {step + 1} (epoch {epoch}); stopping before it "
                        f"reaches the weights. Lower the learning rate, or pass "
                        f"--nonfinite_loss skip to drop such steps."
                    )
                if nonfinite:  # skip: a zero backward keeps DDP's hooks in step, then drop it
                    accelerator.backward((logits * 0).nan_to_num().sum())
                    optimizer.zero_grad()
                    say(f"step {step + 1}: non-finite loss, step skipped")
                    continue
                accelerator.backward(loss)
                if (
                    accelerator.sync_gradients
                    and accelerator.distributed_type != DistributedType.DEEPSPEED
                ):
                    accelerator.clip_grad_norm_(unwrapped.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            window["loss"] += flags[2].item()
            window["pairs"] += flags[3].item()
            window["micro"] += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            progress.update(1)
            if step % config.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - window["start"]
                logs = {
                    "train/loss": window["loss"] / max(window["pairs"], 1),
                    "train/pairs_per_s": window["pairs"] / elapsed,
                    "train/lr_head": scheduler.get_last_lr()[-1],
                }
                accelerator.log(logs, step=step)
                if accelerator.is_main_process:  # plain-text log beside the trackers
                    with open(train_log, "a") as handle:
                        handle.write(json.dumps({"step": step, **logs}) + "\n")
                progress.set_postfix(
                    loss=f"{logs['train/loss']:.4f}",
                    pairs_s=f"{logs['train/pairs_per_s']:.1f}",
                    refresh=False,  # the bar redraws at its own pace (every 10 s in log files)
                )
                window = {"loss": 0.0, "pairs": 0.0, "micro": 0, "start": time.perf_counter()}
            if step % eval_every == 0 or step == total_steps:
                evaluate_now()
            if stopping or step % checkpoint_every == 0 or step == total_steps:
                average_batchnorm_statistics(unwrapped, accelerator)
                directory = save_checkpoint(
                    checkpoints, step, state_now(), model, optimizer, scheduler, accelerator, best
                )
                if stopping:
                    say(f"stop requested: checkpoint {directory}; resume with --resume_from latest")
                    progress.close()
                    accelerator.end_training()
                    return {"stopped_at": step}
            if step >= total_steps:
                break
        else:
            epoch += 1
            continue
        break
    progress.close()
    average_batchnorm_statistics(unwrapped, accelerator)
    check_ranks_agree(unwrapped, accelerator)
    return finish(config, unwrapped, batches, accelerator, best, cache)


def average_batchnorm_statistics(model: SECAI, accelerator: Accelerator) -> None:
    """Make BatchNorm running statistics the mean over ranks.

    DDP copies rank 0's buffers at every forward, DeepSpeed leaves each rank its own; either
    way evaluation and checkpoints should see one set, the same on every rank.
    """
    if accelerator.num_processes == 1:
        return
    for buffer in (model.head.norm.running_mean, model.head.norm.running_var):
        buffer.copy_(accelerator.reduce(buffer.detach().clone(), reduction="mean"))


def check_ranks_agree(model: SECAI, accelerator: Accelerator) -> None:
    """Every rank must hold the same trainable weights; untied processes are caught here."""
    digest = hashlib.sha256()
    for name, tensor in sorted(ckpt.trainable_tensors(model).items()):
        digest.update(name.encode())
        digest.update(tensor.float().numpy().tobytes())
    digests = gather_object([digest.hexdigest()[:16]])
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks ended with different weights: {digests}")
    accelerator.print(
        f"trainable weights identical on all {accelerator.num_processes} rank(s): {digests[0]}"
    )


def finish(
    config: TrainConfig,
    model: SECAI,
    batches: dict,
    accelerator: Accelerator,
    best: dict,
    cache: EmbeddingCache | None,
) -> dict:
    """Best weights -> validation threshold -> test metrics -> model folder, plots, Hub."""
    output_dir = Path(config.output_dir)
    if best["tensors"] is not None:
        ckpt.load_trainable_tensors(model, best["tensors"])
    results = {}
    valid = predict(model, batches["valid"], accelerator, cache)
    results["validation"] = choose_threshold(valid, config, accelerator)
    threshold = results["validation"].threshold
    predictions = {"validation": valid}
    if "test" in batches:
        predictions["test"] = predict(model, batches["test"], accelerator, cache)
        # The threshold comes from validation only: no tuning on test.
        results["test"] = evaluate_at(
            predictions["test"]["scores"],
            predictions["test"]["labels"],
            threshold,
            weights=config.score_weights,
        )
    for split, result in results.items():
        accelerator.log({f"final_{split}/{k}": v for k, v in result.summary().items()})
    accelerator.print(
        f"best {best['metric']} at step {best['step']}; "
        f"decision threshold (chosen on validation): {threshold:.4f}"
    )
    for split, result in results.items():
        accelerator.print(f"{split}: {result.describe()}")
        accelerator.print(
            f"{split} accuracy: {result.accuracy:.3f}  AUROC: {result.auroc:.3f}  "
            f"AUPR: {result.aupr:.3f}  MCC: {result.mcc:.3f}"
        )
    if accelerator.is_main_process:
        model.config.decision_threshold = threshold
        images = []
        for split, result in results.items():
            write_predictions(
                output_dir / f"predictions_{split}.tsv", predictions[split], threshold
            )
            if config.plots:
                from ppi_dist.plots import plot_evaluation

                images += plot_evaluation(
                    predictions[split]["scores"],
                    predictions[split]["labels"],
                    result,
                    output_dir / "plots" / split,
                    title_prefix=split,
                )
        from ppi_dist.hub import push_folder, save_for_hub

        metrics = {split: result.summary() for split, result in results.items()}
        ckpt.write_json(output_dir / "metrics.json", metrics)
        names = {"train": "train", "valid": "validation", "test": "test"}
        data = {
            names[split]: ", ".join(b.source.files) or str(b.source.dataset_name)
            for split, b in batches.items()
        }
        folder = save_for_hub(
            model,
            output_dir / "model",
            metrics=metrics,
            training_config=config.to_dict(),
            data=data,
            images=images,
            repo_id=config.push_to_hub,
        )
        accelerator.print(f"model: {folder}")
        if config.push_to_hub:
            url = push_folder(folder, config.push_to_hub, private=config.hub_private)
            accelerator.print(f"pushed: {url}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return {split: result.summary() for split, result in results.items()}


def main(argv: list[str] | None = None) -> None:
    try:
        config = load_config(argv)
        train(config)
    except (ConfigError, DataError, NonFiniteLossError) as error:
        # User-facing problems: one clear line, no traceback from deep inside a library.
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # clean teardown: no SIGABRT at exit
    sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

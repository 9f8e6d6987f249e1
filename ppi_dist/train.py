"""Train SE-CAI: `accelerate launch ppi_dist/train.py [--config recipe.yaml] [--key value ...]`.

The recipe, top to bottom (in the manner of the transformers `run_*_no_trainer.py` examples):

    config -> Accelerator -> pair sources; this rank's training batches -> SE-CAI + LoRA
    -> AdamW, schedule -> (resume) -> loop: `train_step` (forward, focal loss, one all-reduce
    of what ranks must agree on, backward, clip, step); checkpoint, then evaluate (pairs
    scored by `scoring`, gathered from every rank, threshold searched on the whole set)
    -> end: best weights saved as the model folder, reloaded, and THAT model's validation
    scores choose the threshold, its test scores are reported (what `predict` will compute).

The same script runs on one CPU, one GPU, a DDP node, or DeepSpeed ZeRO-2 over many nodes:
the accelerate config decides (accelerate_configs/). docs/architecture.md maps the modules.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

# Run as a file (`accelerate launch ppi_dist/train.py`): make the package importable.
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from ppi_dist import checkpoint as ckpt
from ppi_dist.cli import run_tool
from ppi_dist.config import TrainConfig, load_config
from ppi_dist.data import BatchLoader, Columns, PairBatches, PairSource, swap_sides
from ppi_dist.distributed import (
    Preempted,
    StopRequested,
    claim_run_folder,
    compute_precision,
    make_accelerator,
)
from ppi_dist.distributed import average_batchnorm_statistics as average_batchnorm
from ppi_dist.embeddings import open_training_cache, with_cached_states
from ppi_dist.hub import push_folder, save_and_reload, save_run_outputs
from ppi_dist.loss import focal_loss
from ppi_dist.metrics import compare_objectives, evaluate_at, final_report, selection_metric
from ppi_dist.model import SECAI
from ppi_dist.scoring import ScoringInterrupted, choose_threshold, score_split
from ppi_dist.speed import compile_model
from ppi_dist.synthetic import prepare_synthetic_task


class NonFiniteLossError(RuntimeError):
    """The loss was NaN or infinite on some rank."""


# ---- set-up ---------------------------------------------------------------------------


def make_sources(config: TrainConfig, accelerator: Accelerator) -> dict[str, PairSource]:
    """Validated pair sources of train/valid(/test); the synthetic task when none is given."""
    files = {"train": config.train_file, "valid": config.valid_file, "test": config.test_file}
    fasta = config.fasta
    if config.train_file is None:  # the embedded default
        paths = prepare_synthetic_task(
            Path(config.output_dir) / "synthetic_data",
            seed=config.seed,
            train_pairs=config.synthetic_train_pairs,
            eval_pairs=config.synthetic_eval_pairs,
            accelerator=accelerator,
        )
        files, fasta = {k: str(paths[k]) for k in files}, str(paths["fasta"])
    columns = Columns(config.column_a, config.column_b, label=config.column_label)
    sources = {}
    for split, path in files.items():
        if path is not None:
            sources[split] = PairSource(
                path,
                fasta,
                columns=columns,
                labeled=True,
                max_residues=config.max_residues,
                skip_bad_rows=config.skip_bad_rows,
            )
            accelerator.print(f"{split}: {sources[split].validate().summary()}")
    return sources


def make_optimizer(model: SECAI, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with its own learning rate for LoRA and for cross-attention + head.

    No weight decay on biases and normalisation weights (1-d tensors), as usual.
    """
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            part = "lora" if "lora_" in name else "head"
            groups.setdefault((part, param.ndim > 1), []).append(param)
    rates = {"lora": config.learning_rate_lora, "head": config.learning_rate_head}
    param_groups = [
        dict(params=params, lr=rates[part], part=part, weight_decay=config.weight_decay * decay)
        for (part, decay), params in sorted(groups.items())
    ]
    # fused: one kernel for all tensors on a GPU
    return torch.optim.AdamW(param_groups, fused=torch.cuda.is_available())


# ---- one training step ----------------------------------------------------------------


class StepResult(NamedTuple):
    loss_sum: float  # focal loss x pairs, summed over ranks
    pairs: float  # real pairs (weight > 0), summed over ranks
    stopping: bool  # some rank was asked to stop
    skipped: bool  # non-finite loss under `nonfinite_loss: skip`: no update was made


def train_step(
    model,
    batch: dict,
    optimizer,
    accelerator: Accelerator,
    config: TrainConfig,
    stop_requested: bool,
) -> StepResult:
    """Forward, focal loss, backward, clip, optimiser step.

    One all-reduce carries what every rank must agree on before backward (a non-finite
    loss anywhere, a stop request anywhere) and the loss for the log; it is the step's one
    host synchronisation.
    """
    with accelerator.accumulate(model):
        logits = model(**batch)
        loss = focal_loss(
            logits, batch["labels"], config.focal_gamma, config.focal_alpha, weight=batch["weight"]
        )
        pairs = batch["weight"].sum()
        flags = torch.stack(
            [
                (~torch.isfinite(loss)).float(),
                torch.tensor(float(stop_requested), device=loss.device),
                loss.detach().float().nan_to_num() * pairs,
                pairs.float(),
            ]
        )
        nonfinite, stopping, loss_sum, pair_count = accelerator.reduce(flags, "sum").tolist()
        if nonfinite and config.nonfinite_loss == "stop":
            raise NonFiniteLossError(
                "non-finite loss; stopping before it reaches the weights. Lower the learning "
                "rate, or pass --nonfinite_loss skip to drop such steps"
            )
        if nonfinite:  # skip: a zero backward keeps DDP's hooks in step, then drop it
            accelerator.backward((logits * 0).nan_to_num().sum())
            optimizer.zero_grad()
            return StepResult(0.0, 0.0, stopping > 0, skipped=True)
        accelerator.backward(loss)
        if accelerator.sync_gradients and accelerator.distributed_type != DistributedType.DEEPSPEED:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
    return StepResult(loss_sum, pair_count, stopping > 0, skipped=False)


# ---- the end of a run ----------------------------------------------------------------


def finish(
    config: TrainConfig,
    model: SECAI,
    sources: dict,
    accelerator: Accelerator,
    best: dict,
    stop: StopRequested,
) -> dict:
    """Best weights -> model folder -> reload -> validation threshold -> test metrics.

    The threshold is chosen on the scores of the model as it is saved (reloaded from the
    folder, fp32), computed by `scoring` exactly as `predict` and `evaluate` compute them.
    """
    output_dir = Path(config.output_dir)
    if best["tensors"] is not None:
        ckpt.load_trainable_tensors(model, best["tensors"])
    staging, spill = output_dir / "model.partial", output_dir / "scoring_cache"
    shipped = save_and_reload(model, staging, accelerator)
    splits = {"validation": "valid", "test": "test"}
    predictions = {
        split: score_split(shipped, sources[key], accelerator, stop, spill, desc=split)
        for split, key in splits.items()
        if key in sources
    }
    valid = predictions["validation"]
    chosen = choose_threshold(
        valid, accelerator, config.score_weights, config.threshold_grid, config.threshold_objective
    )
    results, comparison = {"validation": chosen}, None
    if "test" in predictions:  # the threshold comes from validation only: no tuning on test
        test = predictions["test"]
        results["test"] = evaluate_at(
            test.scores,
            test.labels,
            chosen.threshold,
            config.score_weights,
            config.threshold_objective,
        )
        comparison = compare_objectives(
            valid.scores,
            valid.labels,
            test.scores,
            test.labels,
            config.score_weights,
            config.threshold_grid,
        )
    accelerator.print(f"best {best['metric']} at step {best['step']}")
    accelerator.print(final_report(results, comparison))
    for split, result in results.items():
        accelerator.log({f"final_{split}/{k}": v for k, v in result.summary().items()})
    if accelerator.is_main_process:
        folder = save_run_outputs(
            output_dir,
            shipped,
            results,
            predictions,
            comparison,
            training_config=config.to_dict(),
            sources=sources,
            plots=config.plots,
            repo_id=config.push_to_hub,
        )
        shutil.rmtree(staging, ignore_errors=True)
        accelerator.print(f"model: {folder}")
        if config.push_to_hub:
            url = push_folder(folder, config.push_to_hub, private=config.hub_private)
            accelerator.print(f"pushed: {url}")
    accelerator.wait_for_everyone()
    return {split: result.summary() for split, result in results.items()}


# ---- the run --------------------------------------------------------------------------


def train(config: TrainConfig) -> dict:
    """Run training; returns the final metrics (validation, and test when given)."""
    accelerator = make_accelerator(config)
    output_dir, device = Path(config.output_dir), accelerator.device
    checkpoints, spill = output_dir / "checkpoints", output_dir / "scoring_cache"
    lock = claim_run_folder(config, accelerator)  # one run per folder, refused or cleared
    accelerator.print(
        f"ppi_dist: {accelerator.num_processes} process(es), "
        f"{accelerator.distributed_type.value}, "
        f"{compute_precision(accelerator)} precision"
    )
    accelerator.print("config: " + json.dumps(config.to_dict(), default=str))
    set_seed(config.seed)

    sources = make_sources(config, accelerator)
    model = SECAI(config.model_config()).to(device)  # on its device before any encoding
    if config.compile:  # in place: same parameters and state-dict keys
        compile_model(model)
    cache = None
    if config.freeze_encoder:  # the encoder never changes: encode every protein once
        directory = config.embedding_cache or output_dir / "embedding_cache"
        cache = open_training_cache(
            model, sources.values(), directory, accelerator, config.max_residues
        )
    # Frozen: the workers hand out cache rows (no tokens), budgeted in cross-attention tokens.
    train_batches = BatchLoader(
        PairBatches(
            sources["train"],
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            seed=config.seed,
            training=True,
            max_tokens=config.max_tokens,
            max_pairs=config.max_pairs,
            batch_size=config.batch_size,
            sort_buffer=config.sort_buffer,
            shuffle_buffer=config.shuffle_buffer,
            cache_index=cache.index if cache is not None else None,
        ),
        num_workers=config.data_workers
        if config.data_workers is not None
        else 2 * torch.cuda.is_available(),
    )
    optimizer = make_optimizer(model, config)
    steps_per_epoch = max(train_batches.count_batches() // config.gradient_accumulation_steps, 1)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    # Created on the plain optimizer and stepped by us once per optimiser step (not
    # `prepare`d: Accelerate would step it once per process).
    warmup = math.ceil(config.warmup_ratio * total_steps)
    scheduler = get_scheduler(config.lr_schedule, optimizer, warmup, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped: SECAI = accelerator.unwrap_model(model)
    trainable = sum(p.numel() for p in unwrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in unwrapped.parameters())
    accelerator.print(
        f"model: {trainable:,} trainable of {total:,} parameters "
        f"({100 * trainable / total:.3f}%); {steps_per_epoch} steps/epoch, "
        f"{total_steps} steps"
    )

    step, epoch, evaluated_step = 0, 0, 0
    best = {"metric": config.best_metric, "value": -math.inf, "step": None, "tensors": None}
    if config.resume_from:
        latest = config.resume_from == "latest"
        directory = ckpt.latest_checkpoint(checkpoints) if latest else Path(config.resume_from)
        if directory is None:
            accelerator.print(f"resume: no checkpoint under {checkpoints}; starting fresh")
        else:
            state = ckpt.resume(
                directory,
                model,
                optimizer,
                scheduler,
                accelerator,
                config.to_dict(),
                config.resume_override,
            )
            step, epoch, best = state["step"], state["epoch"], state["best"]
            evaluated_step = state.get("evaluated_step", step)
            train_batches.load_state_dict(state["data"])
            accelerator.print(
                f"resumed from {directory} at step {step}"
                + "".join(f"; overridden {change}" for change in state["overridden"])
            )

    settings = config.to_dict()
    scalars = {
        k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in settings.items()
    }
    accelerator.init_trackers("ppi_dist", config=scalars)
    swap_generator = torch.Generator().manual_seed(config.seed + accelerator.process_index)
    progress = tqdm(
        total=total_steps,
        initial=step,
        desc="train",
        dynamic_ncols=True,
        disable=not accelerator.is_local_main_process,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,
    )
    checkpoint_every = config.checkpoint_every or steps_per_epoch
    eval_every = config.eval_every or steps_per_epoch
    window = {"loss": 0.0, "pairs": 0.0, "start": time.perf_counter()}

    def save_checkpoint() -> Path:
        average_batchnorm(unwrapped, accelerator)
        state = {
            "step": step,
            "epoch": epoch,
            "data": train_batches.state_dict(),
            "evaluated_step": evaluated_step,
            "config": config.to_dict(),
            "keep_checkpoints": config.keep_checkpoints,
        }
        return ckpt.save(checkpoints, state, best, model, optimizer, scheduler, accelerator)

    def evaluate_now() -> None:
        nonlocal best, evaluated_step
        average_batchnorm(unwrapped, accelerator)
        scored = score_split(
            unwrapped,
            sources["valid"],
            accelerator,
            stop,
            spill,
            cache,
            desc=f"step {step} validation",
        )
        result = choose_threshold(
            scored,
            accelerator,
            config.score_weights,
            config.threshold_grid,
            config.threshold_objective,
        )
        accelerator.log({f"valid/{k}": v for k, v in result.summary().items()}, step=step)
        value = selection_metric(result, config.best_metric)
        if value > best["value"]:
            best = {
                "metric": config.best_metric,
                "value": value,
                "step": step,
                "tensors": ckpt.trainable_tensors(unwrapped),
            }
        evaluated_step = step
        if accelerator.is_main_process:
            progress.write(f"step {step} validation: {result.describe()}")

    def log_window() -> None:
        nonlocal window
        logs = {
            "train/loss": window["loss"] / max(window["pairs"], 1),
            "train/pairs_per_s": window["pairs"] / (time.perf_counter() - window["start"]),
            "train/lr_head": scheduler.get_last_lr()[-1],
        }
        accelerator.log(logs, step=step)
        if accelerator.is_main_process:  # plain-text log beside the trackers
            with open(output_dir / "train_log.jsonl", "a") as handle:
                handle.write(json.dumps({"step": step, **logs}) + "\n")
        progress.set_postfix(
            loss=f"{logs['train/loss']:.4f}",
            pairs_s=f"{logs['train/pairs_per_s']:.1f}",
            refresh=False,
        )
        window = {"loss": 0.0, "pairs": 0.0, "start": time.perf_counter()}

    def due_evaluation() -> bool:
        return step > evaluated_step and (step % eval_every == 0 or step == total_steps)

    # From here on SIGTERM/SIGINT mean "checkpoint and exit 0"; before, they just stop.
    stop = StopRequested()
    try:
        if due_evaluation():  # resumed from a checkpoint written before its evaluation
            evaluate_now()
        model.train()
        while step < total_steps:
            train_batches.set_epoch(epoch)
            for batch in train_batches:
                if cache is not None:  # cache rows -> states gathered on the device
                    batch = with_cached_states(batch, cache, device)
                else:
                    batch = {
                        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                        for k, v in batch.items()
                    }
                if config.swap_augmentation:
                    batch = swap_sides(batch, swap_generator)
                try:
                    result = train_step(model, batch, optimizer, accelerator, config, stop())
                except NonFiniteLossError as error:
                    raise NonFiniteLossError(f"step {step + 1} (epoch {epoch}): {error}") from None
                if result.skipped:
                    if accelerator.is_main_process:
                        progress.write(f"step {step + 1}: non-finite loss, step skipped")
                    continue
                window["loss"] += result.loss_sum
                window["pairs"] += result.pairs
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                step += 1
                progress.update(1)
                if step % config.log_every == 0 or step == total_steps:
                    log_window()
                # The checkpoint comes first: a run killed in its evaluation keeps its steps.
                if result.stopping or step % checkpoint_every == 0 or step == total_steps:
                    save_checkpoint()
                    if result.stopping:
                        raise Preempted
                if due_evaluation():
                    evaluate_now()
                    model.train()
                if step >= total_steps:
                    break
            else:
                epoch += 1
                continue
            break
        progress.close()
        average_batchnorm(unwrapped, accelerator)
        digest = ckpt.check_ranks_agree(unwrapped, accelerator)
        accelerator.print(
            f"trainable weights identical on all {accelerator.num_processes} rank(s): {digest}"
        )
        results = finish(config, unwrapped, sources, accelerator, best, stop)
    except (Preempted, ScoringInterrupted):
        # Pre-empted (SIGTERM/SIGINT): the steps taken are in a checkpoint; exit 0.
        latest = ckpt.latest_checkpoint(checkpoints)
        if latest is None or int(latest.name.split("_")[1]) < step:
            latest = save_checkpoint()
        progress.close()
        accelerator.print(f"stop requested: checkpoint {latest}; resume with --resume_from latest")
        results = {"stopped_at": step}
    train_batches.close()
    accelerator.end_training()
    lock.release()
    return results


def main(argv: list[str] | None = None) -> int:
    def run(args: list[str]) -> int:
        train(load_config(args))
        return 0

    # User errors (bad flags, files, folders, a non-finite loss): one line, exit 2.
    try:
        return run_tool(run, argv, extra_user_errors=(NonFiniteLossError,), keep_debug_flag=True)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # clean teardown: no SIGABRT at exit
        sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

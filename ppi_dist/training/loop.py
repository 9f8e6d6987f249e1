"""Train SE-CAI: one loop with every distributed step in sight.

Top to bottom (in the manner of the transformers `run_*_no_trainer.py` examples):

    config -> Accelerator -> pair sources; this rank's training batches -> SE-CAI + LoRA
    -> AdamW, schedule -> (resume) -> loop: `train_step` (forward, focal loss, one all-reduce
    of what ranks must agree on, backward, clip, step); checkpoint, then evaluate (pairs
    scored by `inference.scoring`, gathered from every rank, threshold searched on the whole
    set) -> `finish`: best weights saved as the model folder, reloaded, and THAT model's
    validation scores choose the threshold, its test scores are reported (what `predict`
    will compute).

The same loop runs on one CPU, one GPU, a DDP node, or DeepSpeed ZeRO-2 over many nodes: the
accelerate config decides (accelerate_configs/). Its command line is `ppi_dist.cli.train`,
launched as `accelerate launch ppi_dist/train.py`; docs/architecture.md maps the modules.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from ppi_dist.data.batching import batch_to_device, swap_sides
from ppi_dist.data.pairs import Pair, sequences_of
from ppi_dist.errors import NonFiniteLossError, Preempted, Stopped
from ppi_dist.evaluation.calibration import fit_shipped_calibration
from ppi_dist.evaluation.threshold import (
    compare_objectives,
    evaluate_at,
    final_report,
    selection_metric,
)
from ppi_dist.hub.push import push_folder
from ppi_dist.inference.cache import EmbeddingCache, covering_cache
from ppi_dist.models.compile import compile_model
from ppi_dist.models.parameters import count_parameters
from ppi_dist.models.secai import SECAI
from ppi_dist.training import checkpoint as ckpt
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.distributed import (
    StopSignals,
    average_batchnorm_statistics,
    claim_run_folder,
    compute_precision,
    make_accelerator,
)
from ppi_dist.training.frozen import open_training_cache, with_cached_states
from ppi_dist.training.outputs import FinalResults, save_and_reload, save_run_outputs
from ppi_dist.training.sources import make_sources, split_key, training_batches
from ppi_dist.training.step import make_optimizer, train_step
from ppi_dist.training.trunk import open_trunk_cache, with_trunk_states
from ppi_dist.training.validation import choose_threshold, score_split


def train(config: TrainConfig) -> dict:
    """Run training; returns the final metrics (validation, and test when given)."""
    accelerator = make_accelerator(config)
    if config.run.resume_from and config.run.resume_from != "latest":  # before data is read
        ckpt.check_resumable(Path(config.run.resume_from))
    # The split's input hashed and its tools found before the folder is claimed: nothing is
    # cleared (--overwrite) for a run that would then stop.
    split = split_key(config)
    # One run per folder, refused or cleared here; released however the run ends, so a
    # refused resume or a failed run in a notebook does not keep the folder locked.
    with claim_run_folder(config, accelerator):
        return _train(config, accelerator, split)


def _train(config: TrainConfig, accelerator: Accelerator, split: dict | None = None) -> dict:
    data, optimization, evaluation, run = (
        config.data,
        config.optimization,
        config.evaluation,
        config.run,
    )
    output_dir, device = Path(run.output_dir), accelerator.device
    checkpoints, spill = output_dir / "checkpoints", output_dir / "scoring_cache"
    accelerator.print(
        f"ppi_dist: {accelerator.num_processes} process(es), "
        f"{accelerator.distributed_type.value}, {compute_precision(accelerator)} precision"
    )
    accelerator.print("config: " + json.dumps(config.to_dict(), default=str))
    secai = config.model.secai
    accelerator.print(
        f"encoding: training {secai.windowing('train').describe(training=True)}; "
        f"scoring {secai.windowing('scoring').describe()}"
    )
    set_seed(optimization.seed)

    sources = make_sources(config, accelerator, split)
    # Read and validated once per run: every evaluation and the final scoring reuse them.
    splits = {key: list(sources[key].pair_rows()) for key in ("valid", "test") if key in sources}
    model = SECAI(config.model.secai_config()).to(device)  # on its device before any encoding
    if config.model.compile:  # in place: same parameters and state-dict keys
        compile_model(model)
    cache = trunk = None
    scoring_windows = config.model.secai.windowing("scoring")
    every_split = [sources["train"].pair_rows(), *splits.values()]
    if config.model.secai.freeze_encoder:  # the encoder never changes: encode once
        directory = data.embedding_cache or output_dir / "embedding_cache"
        cache = open_training_cache(model, every_split, directory, accelerator, scoring_windows)
    elif model.trunk_depth > 0:  # LoRA on the top layers: the layers below run once
        directory = data.trunk_cache or output_dir / "trunk_cache"
        trunk = open_trunk_cache(
            model, every_split, directory, accelerator, scoring_windows, data.trunk_cache_dtype
        )
        model.trunk = trunk  # scoring's embedding cache starts from it too
    cache_index = cache.index if cache is not None else None
    trunk_index = trunk.index if trunk is not None else None
    train_batches = training_batches(
        sources["train"], config, accelerator, cache_index, trunk_index
    )
    optimizer = make_optimizer(model, optimization)
    micro_batches = train_batches.count_batches()
    steps_per_epoch = max(micro_batches // optimization.gradient_accumulation_steps, 1)
    total_steps = optimization.max_steps or optimization.epochs * steps_per_epoch
    # Created on the plain optimizer and stepped by us once per optimiser step (not
    # `prepare`d: Accelerate would step it once per process).
    warmup = math.ceil(optimization.warmup_ratio * total_steps)
    scheduler = get_scheduler(optimization.lr_schedule, optimizer, warmup, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped: SECAI = accelerator.unwrap_model(model)
    trainable, total = count_parameters(unwrapped)
    accelerator.print(
        f"model: {trainable:,} trainable of {total:,} parameters "
        f"({100 * trainable / total:.3f}%); {steps_per_epoch} steps/epoch, {total_steps} steps"
    )

    step, epoch, evaluated_step = 0, 0, 0
    best = {"metric": evaluation.best_metric, "value": -math.inf, "step": None, "tensors": None}
    if run.resume_from:
        latest = run.resume_from == "latest"
        directory = ckpt.latest_checkpoint(checkpoints) if latest else Path(run.resume_from)
        if directory is None:
            accelerator.print(f"resume: no checkpoint under {checkpoints}; starting fresh")
        else:
            parts = (model, optimizer, scheduler, accelerator)
            state = ckpt.resume(directory, *parts, config.to_dict(), run.resume_override)
            step, epoch, best = state["step"], state["epoch"], state["best"]
            evaluated_step = state.get("evaluated_step", step)
            train_batches.load_state_dict(state["data"])
            overridden = "".join(f"; overridden {change}" for change in state["overridden"])
            accelerator.print(f"resumed from {directory} at step {step}{overridden}")

    settings = config.to_dict()
    scalars = {
        k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in settings.items()
    }
    accelerator.init_trackers("ppi_dist", config=scalars)
    swap_generator = torch.Generator().manual_seed(optimization.seed + accelerator.process_index)
    progress = tqdm(
        total=total_steps,
        initial=step,
        desc="train",
        dynamic_ncols=True,
        disable=not accelerator.is_local_main_process,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,
    )
    checkpoint_every = run.checkpoint_every or steps_per_epoch
    eval_every = evaluation.eval_every or steps_per_epoch
    window = {"loss": 0.0, "pairs": 0.0, "start": time.perf_counter()}

    def save_checkpoint() -> Path:
        average_batchnorm_statistics(unwrapped, accelerator)
        state = {
            "step": step,
            "epoch": epoch,
            "data": train_batches.state_dict(),
            "evaluated_step": evaluated_step,
            "config": config.to_dict(),
            "keep_checkpoints": run.keep_checkpoints,
        }
        return ckpt.save(checkpoints, state, best, model, optimizer, scheduler, accelerator)

    def evaluate_now() -> None:
        nonlocal best, evaluated_step
        average_batchnorm_statistics(unwrapped, accelerator)
        desc = f"step {step} validation"
        scored = score_split(
            unwrapped,
            splits["valid"],
            accelerator,
            stop,
            spill,
            cache,
            desc,
        )
        result = choose_threshold(
            scored,
            accelerator,
            evaluation.score_weights,
            evaluation.threshold_grid,
            evaluation.threshold_objective,
        )
        accelerator.log({f"valid/{k}": v for k, v in result.summary().items()}, step=step)
        value = selection_metric(result, evaluation.best_metric)
        if value > best["value"]:
            tensors = ckpt.trainable_tensors(unwrapped)
            best = {
                "metric": evaluation.best_metric,
                "value": value,
                "step": step,
                "tensors": tensors,
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
        loss, pairs_s = f"{logs['train/loss']:.4f}", f"{logs['train/pairs_per_s']:.1f}"
        progress.set_postfix(loss=loss, pairs_s=pairs_s, refresh=False)
        window = {"loss": 0.0, "pairs": 0.0, "start": time.perf_counter()}

    def due_evaluation() -> bool:
        return step > evaluated_step and (step % eval_every == 0 or step == total_steps)

    # From here on SIGTERM/SIGINT mean "checkpoint and exit 0"; before, they just stop.
    stop = StopSignals()
    try:
        if due_evaluation():  # resumed from a checkpoint written before its evaluation
            evaluate_now()
        model.train()
        while step < total_steps:
            train_batches.set_epoch(epoch)
            for batch in train_batches:
                if cache is not None:  # cache rows -> states gathered on the device
                    batch = with_cached_states(batch, cache, device)
                elif trunk is not None:  # tokens + the lower layers' states of their windows
                    batch = with_trunk_states(batch, trunk, device)
                else:
                    batch = batch_to_device(batch, device)
                if optimization.swap_augmentation:
                    batch = swap_sides(batch, swap_generator)
                try:
                    result = train_step(model, batch, optimizer, accelerator, optimization, stop())
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
                if step % run.log_every == 0 or step == total_steps:
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
        average_batchnorm_statistics(unwrapped, accelerator)
        digest = ckpt.check_ranks_agree(unwrapped, accelerator)
        accelerator.print(
            f"trainable weights identical on all {accelerator.num_processes} rank(s): {digest}"
        )
        results = finish(config, unwrapped, sources, splits, accelerator, best, stop, cache)
    except Stopped:
        # Pre-empted (SIGTERM/SIGINT): the steps taken are in a checkpoint; exit 0.
        latest = ckpt.latest_checkpoint(checkpoints)
        if latest is None or int(latest.name.split("_")[1]) < step:
            latest = save_checkpoint()
        progress.close()
        accelerator.print(f"stop requested: checkpoint {latest}; resume with --resume_from latest")
        results = {"stopped_at": step}
    except BaseException:
        progress.close()  # the bar ends its line first: the error's one line comes after it
        raise
    train_batches.close()
    accelerator.end_training()
    return results


def finish(
    config: TrainConfig,
    model: SECAI,
    sources: dict,
    splits: dict[str, list[Pair]],
    accelerator: Accelerator,
    best: dict,
    stop: StopSignals,
    cache: EmbeddingCache | None = None,
) -> dict:
    """Best weights -> model folder -> reload -> validation threshold -> test metrics.

    The threshold is chosen on the scores of the model as it is saved (reloaded from the
    folder, fp32), computed by `inference.scoring` exactly as `predict` and `evaluate`
    compute them. A frozen encoder's training `cache` is read instead of encoding the
    splits again when it covers them from the saved model's encoder weights and windowing
    (`covering_cache`); it was encoded as scoring encodes (`training.frozen`). A trained
    encoder (LoRA) encodes each split once.
    """
    evaluation, output_dir = config.evaluation, Path(config.run.output_dir)
    if best["tensors"] is not None:
        ckpt.load_trainable_tensors(model, best["tensors"])
    staging, spill = output_dir / "model.partial", output_dir / "scoring_cache"
    shipped = save_and_reload(model, staging, accelerator)
    shipped.trunk = model.trunk  # same base weights: the trunk holds for the reloaded model
    windowing = shipped.config.windowing("scoring")
    if cache is not None:
        wanted = sequences_of(pair for pairs in splits.values() for pair in pairs)
        covered = cache.directory is not None and (
            covering_cache(cache.directory, shipped, wanted, windowing) is not None
        )
        cache = cache if covered else None
        how = "the training cache" if covered else "encoded again (the cache does not cover it)"
        accelerator.print(f"final scoring: {how}")
    names = {"validation": "valid", "test": "test"}
    predictions = {
        split: score_split(
            shipped,
            splits[key],
            accelerator,
            stop,
            spill,
            cache,
            desc=split,
        )
        for split, key in names.items()
        if key in splits
    }
    valid = predictions["validation"]
    weights, grid = evaluation.score_weights, evaluation.threshold_grid
    chosen = choose_threshold(valid, accelerator, weights, grid, evaluation.threshold_objective)
    # Platt scaling on the validation scores only; the threshold stays on the raw score.
    shipped.calibration = fit_shipped_calibration(valid.scores, valid.labels)
    if shipped.calibration is None:
        accelerator.print("no calibration: the validation scores rank no better than chance")
    final = FinalResults({"validation": chosen}, predictions)
    if "test" in predictions:  # the threshold comes from validation only: no tuning on test
        test = predictions["test"]
        final.results["test"] = evaluate_at(
            test.scores, test.labels, chosen.threshold, weights, evaluation.threshold_objective
        )
        final.comparison = compare_objectives(
            valid.scores, valid.labels, test.scores, test.labels, weights, grid
        )
    accelerator.print(f"best {best['metric']} at step {best['step']}")
    accelerator.print(final_report(final.results, final.comparison))
    for split, result in final.results.items():
        accelerator.log({f"final_{split}/{k}": v for k, v in result.summary().items()})
    if accelerator.is_main_process:
        folder = save_run_outputs(config, shipped, final, sources)
        shutil.rmtree(staging, ignore_errors=True)
        accelerator.print(f"model: {folder}")
        if config.run.push_to_hub:
            url = push_folder(folder, config.run.push_to_hub, private=config.run.hub_private)
            accelerator.print(f"pushed: {url}")
    accelerator.wait_for_everyone()
    return {split: result.summary() for split, result in final.results.items()}

"""Train SE-CAI: the run as a story, every distributed step in sight.

    train(config)
      setup(config, accelerator) -> Run   sources and splits, SE-CAI, the encoder's states
                                          (below), this rank's batches, AdamW and the
                                          schedule, `accelerator.prepare` (`training.run`)
      resume(run)                         from --resume_from: weights, optimiser, schedule,
                                          best so far, data position, RNG
      train_steps(run)                    per batch: `train_step` (forward, focal loss, one
                                          all-reduce of what ranks must agree on, backward,
                                          clip, step); the log, the checkpoint, then
                                          validation (pairs scored by `inference.scoring`,
                                          gathered from every rank, the threshold searched
                                          on the whole set)
      finish(run)                         best weights saved as the model folder, reloaded,
                                          and THAT model's validation scores choose the
                                          threshold, its test scores are reported (what
                                          `predict` will compute)

The encoder runs one of three ways: frozen (every protein encoded once into the embedding
cache, `training.frozen`; the steps read its states), LoRA on its top `lora_layers` over
the trunk cache (the layers below run once, `training.trunk`), or LoRA on every layer
(tokens through the whole encoder). The same loop runs on one CPU, one GPU, a DDP node, or
DeepSpeed ZeRO-2 over many nodes: the accelerate config decides (accelerate_configs/). Its
command line is `ppi_dist.cli.train`, launched as `accelerate launch ppi_dist/train.py`;
docs/architecture.md maps the modules.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from accelerate import Accelerator
from tqdm.auto import tqdm

from ppi_dist.data.pairs import sequences_of
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
from ppi_dist.inference.scoring import ScoredPairs
from ppi_dist.models.secai import SECAI
from ppi_dist.training import checkpoint as ckpt
from ppi_dist.training.checkpoint import Best
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.distributed import (
    StopSignals,
    average_batchnorm_statistics,
    claim_run_folder,
    make_accelerator,
)
from ppi_dist.training.outputs import (
    FinalResults,
    first_pass_metrics,
    save_and_reload,
    save_run_outputs,
)
from ppi_dist.training.profiling import StepProfiler, report
from ppi_dist.training.run import LogWindow, Run, setup
from ppi_dist.training.sources import split_key
from ppi_dist.training.step import StepResult, train_step
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
        _as_the_checkpoint_was(config, accelerator)
        run = setup(config, accelerator, split)
        resume(run)
        start_logging(run)
        # From here on SIGTERM/SIGINT mean "checkpoint and exit 0"; before, they just stop.
        run.stop = StopSignals()
        try:
            train_steps(run)
            results = finish(run)
        except Stopped:  # pre-empted: the steps taken are in a checkpoint; exit 0
            results = checkpoint_and_stop(run)
        except BaseException:
            run.progress.close()  # the bar ends its line first: the error's one line comes after
            raise
        run.batches.close()
        accelerator.end_training()
        return results


# ---- resume -----------------------------------------------------------------------------


def resume(run: Run) -> None:
    """Continue from `--resume_from` ("latest": the newest completed checkpoint of this run,
    if any): weights, optimiser, schedule, best so far, data position and RNG."""
    settings, accelerator = run.config.run, run.accelerator
    if not settings.resume_from:
        return
    directory = _resume_directory(run.config)
    if directory is None:
        accelerator.print(f"resume: no checkpoint under {run.checkpoints}; starting fresh")
        return
    parts = (run.model, run.optimizer, run.scheduler, accelerator)
    state = ckpt.resume(directory, *parts, run.config.to_dict(), settings.resume_override)
    run.step, run.epoch, run.best = state["step"], state["epoch"], state["best"]
    run.evaluated_step = state.get("evaluated_step", run.step)
    run.batches.load_state_dict(state["data"])
    overridden = "".join(f"; overridden {change}" for change in state["overridden"])
    accelerator.print(f"resumed from {directory} at step {run.step}{overridden}")


def _resume_directory(config: TrainConfig) -> Path | None:
    """The checkpoint `--resume_from` names ("latest": the newest completed one of this
    run's folder; None when there is none yet or nothing is resumed)."""
    resume_from = config.run.resume_from
    if not resume_from:
        return None
    if resume_from == "latest":
        return ckpt.latest_checkpoint(Path(config.run.output_dir) / "checkpoints")
    return Path(resume_from)


def _as_the_checkpoint_was(config: TrainConfig, accelerator: Accelerator) -> None:
    """A checkpoint saved before models had a first pass resumes without one."""
    directory = _resume_directory(config)
    if directory is not None and ckpt.saved_before_first_pass(directory):
        config.model.secai.first_pass_width = None
        accelerator.print(f"{directory} was saved without a first pass: resuming without one")


def start_logging(run: Run) -> None:
    """The trackers (with every setting), the progress bar, the first log window."""
    settings = run.config.to_dict()
    scalars = {
        k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in settings.items()
    }
    run.accelerator.init_trackers("ppi_dist", config=scalars)
    run.progress = tqdm(
        total=run.total_steps,
        initial=run.step,
        desc="train",
        dynamic_ncols=True,
        disable=not run.accelerator.is_local_main_process,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,
    )
    run.window = LogWindow()
    run.memory.reset()  # the log's peaks are the steps', not the set-up's
    main = run.accelerator.is_main_process
    run.profiler = StepProfiler(run.config.run.profile_steps if main else 0, run.accelerator.device)


# ---- train ------------------------------------------------------------------------------


def train_steps(run: Run) -> None:
    """From the run's step to its last, epoch after epoch; then every rank's trainable
    weights checked to be the same."""
    accelerator = run.accelerator
    if due_evaluation(run):  # resumed from a checkpoint written before its evaluation
        validate(run)
    run.model.train()
    while run.step < run.total_steps:
        run.batches.set_epoch(run.epoch)
        if not train_epoch(run):  # the last step was taken in this epoch
            break
        run.epoch += 1
    if run.profiler.active:
        run.profiler.close()
        run.progress.write(f"profile: the run ended before {run.profiler.steps + 1} steps")
    run.progress.close()
    average_batchnorm_statistics(run.unwrapped, accelerator)
    digest = ckpt.check_ranks_agree(run.unwrapped, accelerator)
    accelerator.print(
        f"trainable weights identical on all {accelerator.num_processes} rank(s): {digest}"
    )


def train_epoch(run: Run) -> bool:
    """This rank's batches of the epoch from where the data stands: one `train_step` each,
    an optimiser step per `gradient_accumulation_steps` of them. False once the run's last
    step is taken (the epoch is then left unfinished)."""
    accelerator = run.accelerator
    for batch in run.batches:
        with run.profiler.step():  # nothing unless --profile_steps
            result = take_step(run, batch)
        if run.profiler.summary is not None:
            report_profile(run)
        if result.skipped:
            if accelerator.is_main_process:
                run.progress.write(f"step {run.step + 1}: non-finite loss, step skipped")
            continue
        run.window.add(result, run.batch_flops(batch))
        if not accelerator.sync_gradients:  # accumulating: no optimiser step yet
            continue
        run.scheduler.step()
        run.step += 1
        run.progress.update(1)
        if run.due(run.config.run.log_every):
            log_window(run)
        # The checkpoint comes first: a run killed in its evaluation keeps its steps.
        if result.stopping or run.due(run.config.run.checkpoint_every):
            save_checkpoint(run)
            if result.stopping:
                raise Preempted
        if due_evaluation(run):
            validate(run)
            run.model.train()
        if run.step >= run.total_steps:
            return False
    return True


def take_step(run: Run, batch: dict) -> StepResult:
    """`train_step` on a loader's batch; a non-finite loss's error names the step."""
    accelerator, optimization = run.accelerator, run.config.optimization
    try:
        prepared = run.prepare(batch)
        return train_step(run.model, prepared, run.optimizer, accelerator, optimization, run.stop())
    except NonFiniteLossError as error:
        raise NonFiniteLossError(f"step {run.step + 1} (epoch {run.epoch}): {error}") from None


def report_profile(run: Run) -> None:
    """The profiled steps' summary, printed and written to profile.md; profiling ends."""
    lines = report({"train step": run.profiler.summary}, top=20)
    (run.output_dir / "profile.md").write_text("\n".join(lines) + "\n")
    run.progress.write("\n".join([*lines, f"profile: {run.output_dir / 'profile.md'}"]))
    run.profiler = StepProfiler(0, run.accelerator.device)


def due_evaluation(run: Run) -> bool:
    return run.step > run.evaluated_step and run.due(run.config.evaluation.eval_every)


def log_window(run: Run) -> None:
    """The window's loss, pairs/s, model TFLOP/s (and MFU), peak memory and head learning
    rate to the trackers, train_log.jsonl and the progress bar; a new window opens."""
    logs = run.window.logs(run.scheduler.get_last_lr()[-1], run.config.run.peak_tflops)
    logs["train/peak_memory_gib"] = run.memory.peak_bytes() / 2**30
    run.memory.reset()
    run.accelerator.log(logs, step=run.step)
    if run.accelerator.is_main_process:  # plain-text log beside the trackers
        with open(run.output_dir / "train_log.jsonl", "a") as handle:
            handle.write(json.dumps({"step": run.step, **logs}) + "\n")
    loss, pairs_s = f"{logs['train/loss']:.4f}", f"{logs['train/pairs_per_s']:.1f}"
    run.progress.set_postfix(loss=loss, pairs_s=pairs_s, refresh=False)
    run.window = LogWindow()


def save_checkpoint(run: Run) -> Path:
    """Every rank's state at this step (`training.checkpoint`); BatchNorm statistics first
    averaged over the ranks."""
    average_batchnorm_statistics(run.unwrapped, run.accelerator)
    state = {
        "step": run.step,
        "epoch": run.epoch,
        "data": run.batches.state_dict(),
        "evaluated_step": run.evaluated_step,
        "config": run.config.to_dict(),
        "keep_checkpoints": run.config.run.keep_checkpoints,
    }
    parts = (run.model, run.optimizer, run.scheduler, run.accelerator)
    return ckpt.save(run.checkpoints, state, run.best, *parts)


def validate(run: Run) -> None:
    """The validation pairs scored over every rank, the threshold searched on all of them;
    the weights kept when the run's `best_metric` is the best so far."""
    accelerator, evaluation = run.accelerator, run.config.evaluation
    average_batchnorm_statistics(run.unwrapped, accelerator)
    desc = f"step {run.step} validation"
    scored = score_split(
        run.unwrapped, run.splits["valid"], accelerator, run.stop, run.spill, run.cache, desc
    )
    result = choose_threshold(
        scored,
        accelerator,
        evaluation.score_weights,
        evaluation.threshold_grid,
        evaluation.threshold_objective,
    )
    accelerator.log({f"valid/{k}": v for k, v in result.summary().items()}, step=run.step)
    value = selection_metric(result, evaluation.best_metric)
    if value > run.best.value:
        tensors = ckpt.trainable_tensors(run.unwrapped)
        run.best = Best(evaluation.best_metric, value, run.step, tensors)
    run.evaluated_step = run.step
    if accelerator.is_main_process:
        run.progress.write(f"step {run.step} validation: {result.describe()}")


def checkpoint_and_stop(run: Run) -> dict:
    """Stopped (SIGTERM/SIGINT): the steps taken are checkpointed, if not already."""
    latest = ckpt.latest_checkpoint(run.checkpoints)
    if latest is None or ckpt.checkpoint_step(latest) < run.step:
        latest = save_checkpoint(run)
    run.progress.close()
    run.accelerator.print(f"stop requested: checkpoint {latest}; resume with --resume_from latest")
    return {"stopped_at": run.step}


# ---- finish -----------------------------------------------------------------------------


def finish(run: Run) -> dict:
    """Best weights -> model folder -> reload -> validation threshold -> test metrics.

    The threshold is chosen on the scores of the model as it is saved (reloaded from the
    folder, fp32), computed by `inference.scoring` exactly as `predict` and `evaluate`
    compute them. A frozen encoder's training cache is read instead of encoding the
    splits again when it covers them from the saved model's encoder weights and windowing
    (`covering_cache`); it was encoded as scoring encodes (`training.frozen`). A trained
    encoder (LoRA) encodes each split once.
    """
    accelerator = run.accelerator
    if run.best.tensors is not None:
        ckpt.load_trainable_tensors(run.unwrapped, run.best.tensors)
    staging = run.output_dir / "model.partial"
    shipped = save_and_reload(run.unwrapped, staging, accelerator)
    shipped.trunk = run.unwrapped.trunk  # same base weights: the trunk holds for it too
    cache = _final_cache(run, shipped)
    names = {"validation": "valid", "test": "test"}
    predictions = {
        split: score_split(
            shipped, run.splits[key], accelerator, run.stop, run.spill, cache, desc=split
        )
        for split, key in names.items()
        if key in run.splits
    }
    final = _threshold_and_test(run, shipped, predictions)
    accelerator.print(f"best {run.best.metric} at step {run.best.step}")
    accelerator.print(final_report(final.results, final.comparison))
    for split, metrics in first_pass_metrics(predictions).items():
        auroc, aupr = metrics["auroc"], metrics["aupr"]
        accelerator.print(f"first pass (screen) on {split}: AUROC {auroc:.4f}, AUPR {aupr:.4f}")
    for split, result in final.results.items():
        accelerator.log({f"final_{split}/{k}": v for k, v in result.summary().items()})
    if accelerator.is_main_process:
        folder = save_run_outputs(run.config, shipped, final, run.sources)
        shutil.rmtree(staging, ignore_errors=True)
        accelerator.print(f"model: {folder}")
        if run.config.run.push_to_hub:
            hub = run.config.run
            url = push_folder(folder, hub.push_to_hub, private=hub.hub_private)
            accelerator.print(f"pushed: {url}")
    accelerator.wait_for_everyone()
    return {split: result.summary() for split, result in final.results.items()}


def _final_cache(run: Run, shipped: SECAI) -> EmbeddingCache | None:
    """The training cache when it covers every split for the saved model, else None."""
    cache = run.cache
    if cache is None:
        return None
    wanted = sequences_of(pair for pairs in run.splits.values() for pair in pairs)
    windowing = shipped.config.windowing("scoring")
    covered = cache.directory is not None and (
        covering_cache(cache.directory, shipped, wanted, windowing) is not None
    )
    how = "the training cache" if covered else "encoded again (the cache does not cover it)"
    run.accelerator.print(f"final scoring: {how}")
    return cache if covered else None


def _threshold_and_test(
    run: Run, shipped: SECAI, predictions: dict[str, ScoredPairs]
) -> FinalResults:
    """The threshold chosen on validation, the calibration fitted there (on `shipped`), and
    the test metrics at that threshold with the objectives compared."""
    evaluation = run.config.evaluation
    weights, grid, objective = (
        evaluation.score_weights,
        evaluation.threshold_grid,
        evaluation.threshold_objective,
    )
    valid = predictions["validation"]
    chosen = choose_threshold(valid, run.accelerator, weights, grid, objective)
    # Platt scaling on the validation scores only; the threshold stays on the raw score.
    shipped.calibration = fit_shipped_calibration(valid.scores, valid.labels)
    if shipped.calibration is None:
        run.accelerator.print("no calibration: the validation scores rank no better than chance")
    final = FinalResults({"validation": chosen}, predictions)
    if "test" in predictions:  # the threshold comes from validation only: no tuning on test
        test = predictions["test"]
        final.results["test"] = evaluate_at(
            test.scores, test.labels, chosen.threshold, weights, objective
        )
        final.comparison = compare_objectives(
            valid.scores, valid.labels, test.scores, test.labels, weights, grid
        )
    return final

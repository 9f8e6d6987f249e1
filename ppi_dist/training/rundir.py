"""Output folders that belong to one run: claim (with a lock), clear, and resume checks.

    lock = claim_output_dir(run.output_dir, resuming=bool(run.resume_from),
                            overwrite=run.overwrite, is_main=accelerator.is_main_process)
    ...                                         # train; on resume, after reading the state:
    check_resume_config(state["config"], config.to_dict(), override=run.resume_override)
    lock.release()                              # also released at exit, or by the OS on a crash

A folder that holds another run (checkpoints, a model, a train log, metrics) is refused
unless the run resumes it (`--resume_from`) or replaces it (`--overwrite`, which first
removes what a run writes there; other files are left alone). One process at a time holds
`.ppi_dist.lock` in the folder (an advisory `fcntl.flock`, with pid, host and start time
written in it): a second trainer, or a second `predict` into the same output, is refused
with the holder's pid and host (`files.acquire_lock`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from ppi_dist.errors import ConfigError, RunFolderError
from ppi_dist.files import RunLock, acquire_lock

logger = logging.getLogger(__name__)

LOCK_NAME = ".ppi_dist.lock"
# What says "a run was here": its results or resumable state.
RUN_MARKERS = ("checkpoints", "model", "train_log.jsonl", "metrics.json")
# What a run writes (removed by --overwrite; `split` is the run's own validation split, made
# again from the input as it is now). embedding_cache and trunk_cache are kept: they check
# themselves against the encoder and proteins, and are slow to rebuild.
RUN_OUTPUTS = (
    *RUN_MARKERS,
    "plots",
    "ppi_dist",
    "synthetic_data",
    "split",
    "predictions_*.tsv",
    "profile.md",
)
# Settings that may change between a run and its resumption without changing what trains.
# The run's length may change on resume (extend a run, or stop it sooner): the schedule is
# rebuilt for the new length from the command line, so nothing given there is ignored.
# `data_workers` changes where batches are prepared, not which; `encoder_attention` and
# `cross_attention_kernel` which kernel computes the same attention; `compile` whether the
# same layers run compiled; `adamw_implementation` how the same update is computed.
RESUME_FREE = frozenset(
    {
        "output_dir",
        "resume_from",
        "overwrite",
        "resume_override",
        "debug",
        "report_to",
        "log_every",
        "profile_steps",
        "peak_tflops",
        "plots",
        "push_to_hub",
        "hub_private",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_every",
        "embedding_cache",
        "trunk_cache",
        "activation_checkpointing",
        "test_file",
        "activation_checkpointing_every",
        "max_steps",
        "epochs",
        "data_workers",
        "encoder_attention",
        "cross_attention_kernel",
        "compile",
        "adamw_implementation",
        "allow_small_validation",
    }
)


def run_contents(output_dir: Path) -> list[str]:
    """The names in `output_dir` that show a run was there (empty: a fresh folder)."""
    found = []
    for name in RUN_MARKERS:
        path = output_dir / name
        if name == "checkpoints":
            if any(path.glob("step_*")):
                found.append(name)
        elif path.exists():
            found.append(name)
    return found


def clear_run(output_dir: Path) -> list[str]:
    """Remove what a run writes in `output_dir` (not other files, not the lock); names removed."""
    removed = []
    for pattern in RUN_OUTPUTS:
        for path in sorted(output_dir.glob(pattern)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path.name)
    return removed


def claim_output_dir(
    output_dir: str | Path, *, resuming: bool, overwrite: bool, is_main: bool = True
) -> RunLock:
    """Lock `output_dir` for this run; refuse it when it holds another run.

    resuming: `--resume_from` was given (the run in the folder is this run's past).
    overwrite: remove the earlier run's outputs first. Both at once is refused.
    is_main: only the main process locks and clears; other ranks get an unheld lock.
    """
    output_dir = Path(output_dir)
    if resuming and overwrite:
        raise RunFolderError("--resume_from and --overwrite contradict each other: pick one")
    if not is_main:
        return RunLock(None)
    lock = acquire_lock(output_dir / LOCK_NAME, what="trainer")
    try:
        found = run_contents(output_dir)
        if found and overwrite:
            removed = clear_run(output_dir)
            logger.warning("--overwrite: removed %s from %s", ", ".join(removed), output_dir)
        elif found and not resuming:
            raise RunFolderError(
                f"{output_dir} holds another run ({', '.join(found)}); pass --resume_from "
                "latest to continue it, --overwrite to replace it, or choose a new --output_dir"
            )
    except BaseException:
        lock.release()
        raise
    return lock


def check_resume_config(
    saved: dict, current: dict, *, override: str | Iterable[str] | None = None
) -> list[str]:
    """Refuse to resume with settings that differ from the checkpoint's, unless overridden.

    saved: the checkpoint's config (`trainer_state.json["config"]`); current: this command
    line's (`TrainConfig.to_dict()`). Settings in RESUME_FREE may differ; settings only one
    side has (added in a later version) are skipped. `override` names settings that may
    differ anyway ("learning_rate_head,max_steps", or a list): the caller must then APPLY
    the new values (e.g. learning rates to the restored scheduler). Returns the overridden
    differences as "name: saved -> current" lines, for the log.
    """
    if isinstance(override, str):
        override = [name.strip() for name in override.split(",") if name.strip()]
    override = set(override or ())
    unknown = override - set(current)
    if unknown:
        raise ConfigError(f"resume_override: unknown setting(s) {sorted(unknown)}")
    differ = [
        name
        for name in sorted(saved.keys() & current.keys())
        if name not in RESUME_FREE and saved[name] != current[name]
    ]
    refused = [name for name in differ if name not in override]
    if refused:
        shown = "; ".join(f"{n}: {saved[n]!r} -> {current[n]!r}" for n in refused)
        raise ConfigError(
            f"resume: the command line differs from the checkpoint's configuration ({shown}). "
            "Give the checkpoint's values, or pass --resume_override "
            f"{','.join(refused)} to resume with the new ones"
        )
    return [f"{n}: {saved[n]!r} -> {current[n]!r}" for n in differ]

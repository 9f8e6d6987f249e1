"""Resumable training state, in safetensors and JSON.

A checkpoint folder `checkpoints/step_00000120/` holds:

    trainable.safetensors   LoRA, cross-attention and head weights, BatchNorm statistics
    best.safetensors        the best weights so far (by the configured metric), if any
    optimizer.safetensors   AdamW moments per parameter   } without DeepSpeed
    optimizer.json          parameter groups              }
    deepspeed/              DeepSpeed's own partitioned optimizer state (ZeRO-2 runs)
    rng_<rank>.safetensors  torch RNG state of each rank  (+ rng_<rank>.json: Python, NumPy)
    trainer_state.json      step, epoch, data position, scheduler, best metric, config
    manifest.json           the SHA-256 of every file above, checked on resuming
    COMPLETE                written last: a folder without it is an interrupted save

Nothing here is unpickled, except DeepSpeed's own optimizer files under `deepspeed/`,
which DeepSpeed reads itself: resume only from checkpoints your own runs wrote.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object

from ppi_dist.errors import ConfigError, NonFiniteWeightsError
from ppi_dist.files import (
    read_json,
    read_safetensors,
    save_safetensors,
    verify_manifest,
    write_manifest,
)
from ppi_dist.training.rundir import check_resume_config

COMPLETE = "COMPLETE"
STEP_PREFIX = "step_"


@dataclass
class Best:
    """The best validation so far: the metric it is judged by, its value, the step, and the
    trainable weights then (CPU; None before the first validation)."""

    metric: str
    value: float = -math.inf
    step: int | None = None
    tensors: dict[str, torch.Tensor] | None = None

    def scalars(self) -> dict:
        """What `trainer_state.json` records of it (the weights go to best.safetensors)."""
        return {"metric": self.metric, "value": self.value, "step": self.step}


# ---- a whole checkpoint: what the trainer calls ----------------------------------------


def save(
    root: Path, state: dict, best: Best, model, optimizer, scheduler, accelerator: Accelerator
) -> Path:
    """Write checkpoint `step_<state["step"]>` under `root`: everything to continue exactly.

    `state` is JSON (step, epoch, data position, config...); `best` holds the best weights
    so far. Every rank takes part (DeepSpeed saves its own partitions).
    """
    step = state["step"]
    trainables = trainable_tensors(accelerator.unwrap_model(model))
    if not all_finite(trainables):
        raise NonFiniteWeightsError(f"step {step}: weights are not finite; no checkpoint written")
    directory = step_dir(root, step)
    if accelerator.is_main_process:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / COMPLETE).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        model.save_checkpoint(str(directory / "deepspeed"), exclude_frozen_parameters=True)
    elif accelerator.is_main_process:
        tensors, groups = optimizer_to_files(optimizer.optimizer)
        save_safetensors(tensors, directory / "optimizer.safetensors")
        write_json(directory / "optimizer.json", groups)
    save_rng(directory, accelerator.process_index)
    if accelerator.is_main_process:
        save_safetensors(trainables, directory / "trainable.safetensors")
        if best.tensors is not None:
            save_safetensors(best.tensors, directory / "best.safetensors")
        write_json(
            directory / "trainer_state.json",
            {**state, "scheduler": scheduler.state_dict(), "best": best.scalars()},
        )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_manifest(directory)
        (directory / COMPLETE).touch()
        rotate(root, state["keep_checkpoints"])
    accelerator.wait_for_everyone()
    return directory


def load(directory: Path, model, optimizer, scheduler, accelerator: Accelerator) -> dict:
    """Restore a checkpoint written by `save`; returns its state, "best" as a `Best`."""
    if not (directory / COMPLETE).is_file():
        raise FileNotFoundError(f"{directory}: not a completed checkpoint")
    verify_manifest(directory, "checkpoint")
    state = read_json(directory / "trainer_state.json")
    trainables = read_safetensors(directory / "trainable.safetensors")
    check_fits(directory, accelerator.unwrap_model(model), trainables)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        model.load_checkpoint(
            str(directory / "deepspeed"),
            load_module_strict=False,
            load_optimizer_states=True,
            load_lr_scheduler_states=False,
        )
    else:
        groups = read_json(directory / "optimizer.json")
        tensors = read_safetensors(directory / "optimizer.safetensors")
        optimizer.optimizer.load_state_dict(optimizer_from_files(tensors, groups))
    # After DeepSpeed's own load, so our trainables (BatchNorm statistics included) win.
    load_trainable_tensors(accelerator.unwrap_model(model), trainables)
    scheduler.load_state_dict(state["scheduler"])
    load_rng(directory, accelerator.process_index)
    best_path = directory / "best.safetensors"
    tensors = read_safetensors(best_path) if best_path.is_file() else None
    state["best"] = Best(**state["best"], tensors=tensors)
    return state


def resume(
    directory: Path,
    model,
    optimizer,
    scheduler,
    accelerator: Accelerator,
    config: dict,
    override: str | None = None,
) -> dict:
    """`load`, after checking this command line against the checkpoint's configuration.

    Settings that matter (learning rates, data, model shape, seed...) must be the same
    unless named in `override` (`--resume_override`); overridden learning rates are applied
    to the restored optimizer and schedule (which would otherwise win silently).
    """
    check_resumable(directory)
    saved = read_json(directory / "trainer_state.json").get("config")
    if not isinstance(saved, dict):
        raise ConfigError(f"{directory / 'trainer_state.json'}: no 'config'; the file is damaged")
    changed = check_resume_config(saved, config, override=override)
    state = load(directory, model, optimizer, scheduler, accelerator)
    for i, group in enumerate(optimizer.param_groups):
        name = f"learning_rate_{group.get('part', '')}"
        if name in config and saved.get(name) != config[name]:
            scheduler.base_lrs[i] = config[name]
            group["lr"] = config[name] * scheduler.lr_lambdas[i](scheduler.last_epoch)
    state["overridden"] = changed
    return state


def check_resumable(directory: Path) -> None:
    """`--resume_from` names a completed checkpoint: a missing folder, a run folder or an
    interrupted save is refused saying so (not as an unreadable trainer_state.json)."""
    if not directory.is_dir():
        raise FileNotFoundError(
            f"--resume_from {directory}: no such checkpoint folder; give one "
            "(OUTPUT_DIR/checkpoints/step_*), or latest"
        )
    if not (directory / COMPLETE).is_file():
        if (directory / "checkpoints").is_dir():
            hint = "a run folder: give one of its checkpoints/step_*, or latest"
        else:
            hint = "an interrupted save? give another checkpoint, or latest"
        raise FileNotFoundError(
            f"--resume_from {directory}: not a completed checkpoint (no {COMPLETE}); {hint}"
        )


def check_ranks_agree(model: torch.nn.Module, accelerator: Accelerator) -> str:
    """Every rank must hold the same trainable weights; untied processes are caught here."""
    digest = hashlib.sha256()
    for name, tensor in sorted(trainable_tensors(model).items()):
        digest.update(name.encode())
        digest.update(tensor.float().numpy().tobytes())
    digests = gather_object([digest.hexdigest()[:16]])
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks ended with different weights: {digests}")
    return digests[0]


# ---- the parts --------------------------------------------------------------------------


def step_dir(root: Path, step: int) -> Path:
    """The checkpoint folder of `step` under `root`: `step_00000012`."""
    return root / f"{STEP_PREFIX}{step:08d}"


def checkpoint_step(directory: Path) -> int:
    """The step a checkpoint folder holds, from its name (`step_00000012` -> 12)."""
    return int(directory.name.removeprefix(STEP_PREFIX))


def completed_checkpoints(root: Path) -> list[Path]:
    """The completed checkpoints under `root`, oldest step first."""
    done = [p for p in root.glob(f"{STEP_PREFIX}*") if (p / COMPLETE).is_file()]
    return sorted(done, key=checkpoint_step)


def saved_before_first_pass(directory: Path) -> bool:
    """The checkpoint's configuration has no `first_pass_width`: it was saved before models
    had a first pass, so its weights have none, and resuming it must build none."""
    saved = read_json(directory / "trainer_state.json").get("config")
    return isinstance(saved, dict) and "first_pass_width" not in saved


def latest_checkpoint(root: Path) -> Path | None:
    """The completed checkpoint with the highest step under `root`, if any."""
    done = completed_checkpoints(root)
    return done[-1] if done else None


def trainable_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that train, plus the head's buffers (BatchNorm running statistics)."""
    tensors = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    tensors.update({f"head.{n}": b.detach() for n, b in model.head.named_buffers()})
    return {n: t.cpu().contiguous().clone() for n, t in tensors.items()}


def check_fits(directory: Path, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """The checkpoint's trainables have this model's names and shapes: a model of another
    shape (an overridden encoder) is refused here, before the optimizer state is loaded."""
    expected = {name: tuple(t.shape) for name, t in trainable_tensors(model).items()}
    saved = {name: tuple(t.shape) for name, t in tensors.items()}
    if set(saved) != set(expected):
        missing, unexpected = sorted(expected.keys() - saved), sorted(saved.keys() - expected)
        raise ConfigError(
            f"{directory}: the checkpoint is of another model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); resume with the checkpoint's model settings, or "
            "start a new run"
        )
    for name, shape in saved.items():
        if shape != expected[name]:
            raise ConfigError(
                f"{directory}: the checkpoint is of another model shape ({name!r} is "
                f"{list(shape)} there and {list(expected[name])} here); its weights cannot "
                "be resumed into this model: resume with the checkpoint's encoder settings, "
                "or start a new run"
            )


def load_trainable_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved trainables into the model; every trainable must be in the file."""
    expected = set(trainable_tensors(model))
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not fit this model: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    result = model.load_state_dict(tensors, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """An optimizer state dict as (tensors for safetensors, JSON-able parameter groups)."""
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{name}": (value if torch.is_tensor(value) else torch.tensor(value)).cpu()
        for index, slots in state["state"].items()
        for name, value in slots.items()
    }
    return tensors, {"param_groups": state["param_groups"]}


def optimizer_from_files(tensors: dict[str, torch.Tensor], groups: dict) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    param_groups = groups["param_groups"]
    for group in param_groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": param_groups}


def save_rng(directory: Path, rank: int) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = s
    save_safetensors(tensors, directory / f"rng_{rank}.safetensors")
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    (directory / f"rng_{rank}.json").write_text(
        json.dumps(
            {
                "python": [version, list(internal), gauss_next],
                "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
            }
        )
    )


def load_rng(directory: Path, rank: int) -> None:
    path = directory / f"rng_{rank}.safetensors"
    if not path.is_file():  # resumed on more ranks than saved: fresh streams for the new ones
        return
    tensors = read_safetensors(path)
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    states = read_json(directory / f"rng_{rank}.json")
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, default=str) + "\n")


def rotate(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` completed checkpoints.

    The newest completed checkpoint is always kept, whatever `keep` says (0 or negative
    included): it is what `--resume_from latest` needs, e.g. after a pre-emption save.
    """
    done = completed_checkpoints(root)
    for old in done[: max(len(done) - max(keep, 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)

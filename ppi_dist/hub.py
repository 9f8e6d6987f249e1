"""The model folder users download: weights, model card, training config, metrics; and the Hub.

A saved folder (`save_for_hub`)::

    secai_config.json          model config (decision_threshold included)
    secai_head.safetensors     cross-attention + pair head
    adapter/                   LoRA adapter (peft), unless the encoder was frozen
    base_encoder/              ESM-2 weights, when the encoder was built from a config
                               or merged (`export_merged`)
    training_config.json       the run's settings (credentials removed)
    metrics.json               the run's metrics per split
    README.md                  model card with Hub metadata (YAML front matter)
    encoder_identity.json      the encoder's name or path AND a fingerprint of its base
                               weights (LoRA excluded), checked on loading

Loading (`load_model`) takes a local folder or a Hub repo id (`snapshot_download`, then
`SECAI.from_pretrained`); only JSON, safetensors and text are fetched, nothing is unpickled
and no remote code runs. Pushing (`push_folder`) uses `huggingface_hub.HfApi` with the token
from `HF_TOKEN` or the cached login; the token is never printed, logged or written.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ppi_dist.errors import CorruptFileError, UserError
from ppi_dist.model import ADAPTER_DIR, BASE_ENCODER_DIR, CONFIG_NAME, HEAD_WEIGHTS_NAME, SECAI

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
TRAINING_CONFIG_NAME = "training_config.json"
METRICS_NAME = "metrics.json"
IDENTITY_NAME = "encoder_identity.json"
# What a model folder may hold; downloads fetch nothing else (no pickles, no code).
ALLOWED_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.txt", "*.png"]
# Keys dropped from a training config before it is written or shown in the card.
_SECRET_KEY = re.compile(r"token|password|secret|api_key|credential", re.IGNORECASE)
# Metrics listed in the card (and the Hub model-index), in this order.
CARD_METRICS = {
    "auroc": "AUROC",
    "aupr": "AUPR",
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "mcc": "MCC",
    "score": "Weighted score",
    "threshold": "Threshold",
    "all_positive_score": "Score of 'all interact'",
    "all_negative_score": "Score of 'none interact'",
    "n": "Pairs",
    "positive_fraction": "Positive fraction",
}


# --------------------------------------------------------------------------- paths


def safe_join(folder: str | Path, name: str) -> Path:
    """`folder / name`, refusing names that leave `folder` (absolute, `..`, symlinks out)."""
    root = Path(folder).resolve()
    if not name or Path(name).is_absolute() or "\\" in name:
        raise ValueError(f"{name!r}: not a relative file name")
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"{name!r} leaves the folder {root}")
    return target


def scrub_secrets(value: Any) -> Any:
    """A copy of a (nested) config with credential-like keys removed."""
    if isinstance(value, Mapping):
        return {k: scrub_secrets(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list | tuple):
        return [scrub_secrets(v) for v in value]
    return value


# --------------------------------------------------------------------------- model card


def _base_model_of(model: SECAI) -> str | None:
    """The encoder's Hub name, when the model was built from one (not a local path)."""
    name = model.config.encoder
    if name and not Path(name).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return name
    return None


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def card_metadata(
    *,
    base_model: str | None,
    metrics: Mapping[str, Mapping[str, float]],
    datasets: list[str] | None = None,
    model_name: str = "SE-CAI",
    library_name: str = "peft",
    dataset_names: Mapping[str, str] | None = None,
) -> dict:
    """The Hub metadata block: base model, tags, datasets and a model-index of the metrics."""
    metadata: dict[str, Any] = {
        "library_name": library_name,
        "license": "apache-2.0",
        "tags": [
            "protein",
            "protein-protein-interaction",
            "ppi",
            "esm2",
            "lora",
            "cross-attention",
            "biology",
            "ppi_dist",
        ],
        "pipeline_tag": "text-classification",
    }
    if base_model:
        metadata["base_model"] = base_model
    if datasets:
        metadata["datasets"] = list(datasets)
    results = []
    for split, values in metrics.items():
        listed = [
            {"type": key, "name": CARD_METRICS[key], "value": round(float(values[key]), 6)}
            for key in ("auroc", "aupr", "accuracy", "precision", "recall", "f1", "mcc")
            if key in values and values[key] == values[key]  # skip NaN
        ]
        if listed:
            dataset = (dataset_names or {}).get(split, split)
            results.append(
                {
                    "task": {
                        "type": "text-classification",
                        "name": "Protein-protein interaction prediction",
                    },
                    "dataset": {"name": dataset, "type": dataset, "split": split},
                    "metrics": listed,
                }
            )
    if results:
        metadata["model-index"] = [{"name": model_name, "results": results}]
    return metadata


def render_model_card(
    *,
    base_model: str | None,
    metrics: Mapping[str, Mapping[str, float]],
    data: Mapping[str, str] | None = None,
    datasets: list[str] | None = None,
    training_config: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    model_name: str = "SE-CAI",
    merged: bool = False,
    images: list[str] | None = None,
) -> str:
    """The model card text: YAML front matter, then metrics, data, use, caveats, loading.

    `metrics`: split name -> metric values (e.g. `ThresholdResult.summary()`).
    `data`: split name -> where that split came from (free text: file, dataset, block).
    """
    metadata = card_metadata(
        base_model=base_model,
        metrics=metrics,
        datasets=datasets,
        model_name=model_name,
        library_name="ppi_dist" if merged else "peft",
        dataset_names=data,
    )
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    lines = [f"---\n{front}---", "", f"# {model_name}: siamese ESM-2 cross-attention PPI model", ""]
    lines += [
        "Predicts whether two proteins interact from their sequences alone. Both proteins go "
        f"through the same ESM-2 encoder (`{base_model or 'ESM-2'}`"
        + (", LoRA merged into it" if merged else ", fine-tuned with LoRA")
        + "); their residues attend to each other (bidirectional cross-attention), are "
        "max- and mean-pooled, and a small head gives one probability per pair, symmetric in "
        "the two proteins.",
        "",
        "## Metrics",
        "",
    ]
    if metrics:
        splits = list(metrics)
        keys = [k for k in CARD_METRICS if any(k in metrics[s] for s in splits)]
        lines.append("| metric | " + " | ".join(splits) + " |")
        lines.append("| --- |" + " --- |" * len(splits))
        for key in keys:
            cells = [_format_value(metrics[s][key]) if key in metrics[s] else "" for s in splits]
            lines.append(f"| {CARD_METRICS[key]} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(
            "The threshold was chosen on validation by the weighted score (accuracy, precision, "
            "recall, F1); the rows 'all interact' / 'none interact' are what the trivial "
            "predictors score on the same pairs. A weighted score near those is no evidence of "
            "a working model: judge it by AUROC, AUPR and MCC."
        )
    else:
        lines.append("No evaluation was recorded for this run.")
    lines += ["", "## Data", ""]
    if data:
        lines += [f"- **{split}**: {where}" for split, where in data.items()]
    else:
        lines.append("Not recorded.")
    if images:
        lines += ["", "## Curves", ""]
        lines += [f"![{Path(image).stem}]({image})" for image in images]
    lines += [
        "",
        "## Intended use and limits",
        "",
        "Ranking candidate protein pairs for follow-up (screening, all-vs-all over a "
        "proteome), not as evidence of an interaction. Sequences longer than 1,022 residues "
        "are cropped to their central 1,022.",
        "",
        "**Leakage caveat.** Random pair splits leak: most test proteins then also occur in "
        "training, and sequence models score highly by recognising proteins rather than "
        "interactions (published models drop from about 0.9 accuracy on random splits to "
        "near chance on protein-disjoint ones). Only a protein-disjoint evaluation, such as "
        "the Bernett et al. 2024 gold standard, says how the model does on new proteins. "
        "Compare every figure with the trivial baselines above.",
        "",
        "## How to load",
        "",
        "```python",
        "from ppi_dist.hub import load_model",
        f'model = load_model("{repo_id or "path/or/repo-id"}")  # download + from_pretrained',
        "```",
        "",
        "Score pairs, or all pairs of a FASTA file (each protein encoded once):",
        "",
        "```bash",
        f"python -m ppi_dist.predict --model {repo_id or 'path/or/repo-id'} "
        "--fasta proteins.fasta --out scores.tsv",
        "```",
    ]
    if merged:
        lines += ["", "LoRA is merged into `base_encoder/`: loading needs no peft adapter."]
    if training_config:
        shown = json.dumps(scrub_secrets(dict(training_config)), indent=2, default=str)
        lines += ["", "## Training configuration", "", "```json", shown, "```"]
    return "\n".join(lines) + "\n"


def parse_card_metadata(text: str) -> dict:
    """The YAML front matter of a model card."""
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    if match is None:
        raise ValueError("no YAML front matter")
    return yaml.safe_load(match.group(1))


# --------------------------------------------------------------------------- saving


def save_for_hub(
    model: SECAI,
    folder: str | Path,
    *,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    training_config: Mapping[str, Any] | None = None,
    data: Mapping[str, str] | None = None,
    datasets: list[str] | None = None,
    base_model: str | None = None,
    repo_id: str | None = None,
    images: list[str | Path] | None = None,
    merged: bool = False,
) -> Path:
    """Save model + card + training config + metrics into `folder` (ready to push).

    Args:
        metrics: split -> metric values, e.g. {"validation": result.summary(), "test": ...}.
        training_config: the run's settings (keys that look like credentials are dropped).
        data: split -> description of the data (file names, dataset, protein-disjoint...).
        datasets: Hub dataset ids for the card's metadata.
        base_model: the ESM-2 Hub name; default: the model's encoder name if it is one.
        images: PNGs (e.g. from `plots.plot_evaluation`) copied to `plots/` and shown.
        merged: `export_merged` instead of `save_pretrained` (LoRA merged, no peft needed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base_model = base_model or _base_model_of(model)
    if merged:
        export_merged(model, folder)
    else:
        model.save_pretrained(folder)
    write_encoder_identity(model, folder)
    metrics = {split: dict(values) for split, values in (metrics or {}).items()}
    (folder / METRICS_NAME).write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    clean_config = scrub_secrets(dict(training_config or {}))
    (folder / TRAINING_CONFIG_NAME).write_text(
        json.dumps(clean_config, indent=2, default=str) + "\n"
    )
    shown = []
    images = [Path(image) for image in images or []]
    # Plots of several splits share file names (valid/pr_curve.png, test/pr_curve.png).
    clash = len({image.name for image in images}) < len(images)
    for image in images:
        name = f"plots/{image.parent.name}_{image.name}" if clash else f"plots/{image.name}"
        target = safe_join(folder, name)
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(image, target)
        shown.append(name)
    card = render_model_card(
        base_model=base_model,
        metrics=metrics,
        data=data,
        datasets=datasets,
        training_config=clean_config,
        repo_id=repo_id,
        merged=merged,
        images=shown,
    )
    (folder / CARD_NAME).write_text(card)
    return folder


def save_and_reload(model: SECAI, folder: Path, accelerator: Accelerator) -> SECAI:
    """Save `model` (main process), then load it back on every process, on its device: the
    model exactly as it ships (fp32 weights), for the scores its threshold is chosen on."""
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        model.save_pretrained(folder)
    accelerator.wait_for_everyone()
    return SECAI.from_pretrained(folder).to(accelerator.device)


def save_run_outputs(
    output_dir: Path,
    model: SECAI,
    results: Mapping[str, Any],
    predictions: Mapping[str, Any],
    comparison: Mapping[str, Any] | None = None,
    *,
    training_config: Mapping[str, Any],
    sources: Mapping[str, Any],
    plots: bool = True,
    repo_id: str | None = None,
) -> Path:
    """The end of a run: predictions, plots, metrics.json and the model folder with its card.

    `results[split]` are `metrics.ThresholdResult`s at the threshold chosen on validation
    (`results["validation"]`), `predictions[split]` the `scoring.ScoredPairs` they came
    from, `comparison` the test metrics of every threshold objective
    (`metrics.compare_objectives`), `sources` the run's `data.PairSource`s by split.
    """
    chosen = results["validation"]
    names = {"train": "train", "valid": "validation", "test": "test"}
    data = {
        names[split]: ", ".join(source.files) or str(source.dataset_name)
        for split, source in sources.items()
    }
    model.config.decision_threshold = chosen.threshold
    model.config.threshold_objective = chosen.objective
    images: list[Path] = []
    for split, result in results.items():
        predictions[split].write_tsv(output_dir / f"predictions_{split}.tsv", chosen.threshold)
        if plots:
            from ppi_dist.plots import plot_evaluation

            images += plot_evaluation(
                predictions[split].scores,
                predictions[split].labels,
                result,
                output_dir / "plots" / split,
                title_prefix=split,
            )
    metrics = {split: result.summary() for split, result in results.items()}
    extra = {"threshold_objective": chosen.objective}
    if comparison:
        extra["objectives"] = {
            objective: {"threshold": pair["validation"].threshold, "test": pair["test"].summary()}
            for objective, pair in comparison.items()
        }
    (output_dir / "metrics.json").write_text(
        json.dumps({**metrics, **extra}, indent=2, default=str) + "\n"
    )
    return save_for_hub(
        model,
        output_dir / "model",
        metrics=metrics,
        training_config=training_config,
        data=data,
        images=images,
        repo_id=repo_id,
    )


def export_merged(model: SECAI, folder: str | Path) -> Path:
    """Save `model` with its LoRA merged into the encoder: loads without peft.

    The merged encoder is saved as `base_encoder/` (safetensors) and the config says
    `freeze_encoder`, so `SECAI.from_pretrained` builds a plain EsmModel and loads no adapter.
    Probabilities match the LoRA model to float rounding (tests: 1e-5). `model` is unchanged.
    """
    from peft import PeftModel

    encoder = copy.deepcopy(model.encoder)
    if isinstance(encoder, PeftModel):
        encoder = encoder.merge_and_unload()
    encoder_config = json.loads(encoder.config.to_json_string())
    config = replace(
        model.config,
        encoder=None,
        encoder_config=encoder_config,
        freeze_encoder=True,
        activation_checkpointing=False,
    )
    merged = SECAI(config, encoder=encoder)
    merged.load_state_dict(model.trainable_state_dict(), strict=False)  # cross-attention, head
    merged.save_pretrained(folder)
    return Path(folder)


# --------------------------------------------------------------------------- identity


def base_encoder_fingerprint(model_or_encoder) -> str:
    """A fingerprint of the BASE encoder weights: LoRA tensors excluded, names unwrapped.

    The same pretrained ESM-2 gives the same fingerprint with or without a LoRA adapter on
    it, so a saved model can say which encoder weights its adapter and head were trained on.
    Every tensor contributes its name, shape and a strided sample of at most 65,536 values
    (exact for small tensors; for ESM-2 650M about a second on CPU).
    """
    import hashlib

    from ppi_dist.model import _base_weights, base_encoder

    base = base_encoder(getattr(model_or_encoder, "encoder", model_or_encoder))
    digest = hashlib.sha256()
    for name, tensor in sorted(_base_weights(base).items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 65536)].float().cpu().numpy()
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()[:32]


def write_encoder_identity(model: SECAI, folder: str | Path) -> Path:
    """Record which encoder `model` was built on (name or path + weight fingerprint)."""
    path = Path(folder) / IDENTITY_NAME
    identity = {
        "encoder": model.config.encoder or BASE_ENCODER_DIR,
        "fingerprint": base_encoder_fingerprint(model),
    }
    path.write_text(json.dumps(identity, indent=2) + "\n")
    return path


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFileError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(value, dict):
        raise CorruptFileError(f"{path}: expected a JSON object")
    return value


def _check_weight_files(folder: Path, config: dict) -> None:
    """Every safetensors file of the folder opens, and holds finite numbers; name the bad one."""
    import torch

    from ppi_dist.checkpoint import read_safetensors

    files = [folder / HEAD_WEIGHTS_NAME]
    if not config.get("freeze_encoder"):
        files.append(folder / ADAPTER_DIR / "adapter_model.safetensors")
    for path in files:
        for name, tensor in read_safetensors(path).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CorruptFileError(
                    f"{path}: tensor {name!r} holds NaN or infinite values; the file is "
                    "damaged (or the run diverged): copy or download it again"
                )
    if config.get("encoder") == BASE_ENCODER_DIR:
        from safetensors import SafetensorError, safe_open

        for path in sorted((folder / BASE_ENCODER_DIR).glob("*.safetensors")):
            try:
                with safe_open(str(path), framework="pt") as handle:
                    handle.keys()
            except (SafetensorError, OSError) as error:
                message = f"{path}: not a readable safetensors file ({error})"
                raise CorruptFileError(message) from None


def _check_encoder_source(folder: Path, config: dict) -> None:
    """A local encoder path must exist (else the Hub would call it an invalid repo id)."""
    encoder = config.get("encoder")
    if not encoder or encoder == BASE_ENCODER_DIR:
        return
    looks_local = encoder.startswith(("/", "./", "../", "~")) or Path(encoder).exists()
    if looks_local and not Path(encoder).expanduser().is_dir():
        raise UserError(
            f"{folder / CONFIG_NAME}: the encoder {encoder!r} is a local folder that does not "
            "exist here; copy the ESM-2 weights there, or edit `encoder` to a Hub name"
        )


def check_encoder_identity(model: SECAI, folder: Path, *, allow_mismatch: bool = False) -> None:
    """Refuse a model whose encoder weights are not the ones it was trained on.

    Compares the fingerprint in `encoder_identity.json` with the loaded base encoder, and
    the adapter's `base_model_name_or_path` with the configured encoder (a warning: a
    renamed copy of the same weights is fine). A folder saved before identities were
    recorded loads with a warning. `allow_mismatch` turns the refusal into a warning.
    """
    identity_path = folder / IDENTITY_NAME
    adapter_config = folder / ADAPTER_DIR / "adapter_config.json"
    saved = json.loads((folder / CONFIG_NAME).read_text()).get("encoder")
    if adapter_config.is_file() and saved and saved != BASE_ENCODER_DIR:
        named = _read_json(adapter_config).get("base_model_name_or_path")
        if named and named != saved:
            logger.warning(
                "%s names the encoder %r but %s says %r",
                adapter_config,
                named,
                folder / CONFIG_NAME,
                saved,
            )
    if not identity_path.is_file():
        logger.warning(
            "%s: no %s (saved by an older version); the encoder weights are not checked",
            folder,
            IDENTITY_NAME,
        )
        return
    expected = _read_json(identity_path).get("fingerprint")
    found = base_encoder_fingerprint(model)
    if expected != found:
        message = (
            f"{identity_path}: the encoder {saved!r} now has other weights than the model was "
            f"trained on (fingerprint {found} instead of {expected}); every score would change. "
            "Point `encoder` in secai_config.json at the original weights"
        )
        if not allow_mismatch:
            raise UserError(message + ", or pass --allow_encoder_mismatch to use them anyway")
        logger.warning("%s (allowed by --allow_encoder_mismatch)", message)


# --------------------------------------------------------------------------- loading


def load_model(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    token: str | None = None,
    is_trainable: bool = False,
    allow_encoder_mismatch: bool = False,
) -> SECAI:
    """A saved SE-CAI from a local folder, or from a Hub repo id (downloaded first).

    Before building, every weight file is checked (readable, finite: a damaged file is
    named); after, the encoder's weights are checked against the saved fingerprint.
    """
    local = Path(name_or_path)
    if not local.is_dir():
        if local.exists() or str(name_or_path).startswith(("/", "./", "../", "~")):
            raise FileNotFoundError(f"{name_or_path}: no such model folder")
        from huggingface_hub import snapshot_download

        local = Path(
            snapshot_download(
                str(name_or_path),
                revision=revision,
                token=token,
                allow_patterns=ALLOWED_PATTERNS,
                library_name="ppi_dist",
            )
        )
    if not (local / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{name_or_path}: no {CONFIG_NAME}; not an SE-CAI model folder")
    config = _read_json(local / CONFIG_NAME)
    _check_weight_files(local, config)
    _check_encoder_source(local, config)
    try:
        model = SECAI.from_pretrained(local, is_trainable=is_trainable)
    except (OSError, ValueError, RuntimeError) as error:
        if isinstance(error, UserError):
            raise
        raise UserError(f"{local}: cannot load the model: {error}") from error
    check_encoder_identity(model, local, allow_mismatch=allow_encoder_mismatch)
    model.loaded_from = str(local)  # named by errors about this model (predict)
    if "decision_threshold" not in config:  # not a silent 0.5: predict asks for --threshold
        logger.warning("%s: no decision_threshold saved", local / CONFIG_NAME)
        model.config.decision_threshold = None
    return model


# --------------------------------------------------------------------------- pushing


def _refuse_token_in_files(folder: Path, token: str | None) -> None:
    """Never upload a folder that contains the token (e.g. a config that captured it)."""
    if not token:
        return
    needle = token.encode()
    for path in folder.rglob("*"):
        if path.is_file() and path.stat().st_size < 50 * 2**20 and needle in path.read_bytes():
            raise ValueError(f"{path} contains the Hub token; remove it before pushing")


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload SE-CAI model",
    token: str | None = None,
) -> str:
    """Create `repo_id` if needed and upload `folder` to it; returns the commit URL.

    The token comes from `token`, else `HF_TOKEN`, else the cached `hf auth login`; it is
    passed to `HfApi` only and never logged. `revision` names a branch (created if missing).
    """
    from huggingface_hub import HfApi, get_token

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_NAME}; save the model first")
    _refuse_token_in_files(folder, token or os.environ.get("HF_TOKEN") or get_token())
    api = HfApi(token=token)
    logger.info(
        "pushing %s to the Hub repo %s%s",
        folder,
        repo_id,
        f" (branch {revision})" if revision else "",
    )
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        revision=revision,
        commit_message=commit_message,
        allow_patterns=ALLOWED_PATTERNS,
    )
    url = getattr(commit, "commit_url", None) or str(commit)
    logger.info("pushed: %s", url)
    return url

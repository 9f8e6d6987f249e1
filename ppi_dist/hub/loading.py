"""Loading a model folder anywhere: checked before it is built, and after.

`load_model` takes a local folder or a Hub repo id (`snapshot_download`, then
`models.saving.from_pretrained`); only JSON, safetensors and text are fetched, nothing is
unpickled and no remote code runs. Before building, every weight file is checked (readable,
finite: a damaged file is named); after, the encoder's weights are checked against the
fingerprint the folder recorded (`encoder_identity.json`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors import SafetensorError, safe_open
from transformers import EsmModel

from ppi_dist.errors import CorruptFileError, UserError
from ppi_dist.files import read_json, read_safetensors, verify_manifest
from ppi_dist.hub.folder import ALLOWED_PATTERNS, IDENTITY_NAME, TRAINING_CONFIG_NAME
from ppi_dist.models.calibration import CALIBRATION_NAME, Calibration
from ppi_dist.models.encoder import base_encoder_fingerprint
from ppi_dist.models.saving import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    BASE_ENCODER_DIR,
    CONFIG_NAME,
    HEAD_WEIGHTS_NAME,
    from_pretrained,
)
from ppi_dist.models.secai import SECAI

logger = logging.getLogger(__name__)

EDITABLE = ("*.json", "*.md", "*.txt", "*.png")  # not weights: a changed one is a warning


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
    # Every file against the SHA-256 saved with it: finite but changed weights are refused,
    # naming the file. Settings and text may be edited on purpose (`encoder` pointed at the
    # weights' new place, a card edited on the Hub) and are checked field by field below,
    # so a change there is a warning naming the file.
    verify_manifest(local, "model folder", warn_only=EDITABLE, required=own_files(local))
    config = read_json(local / CONFIG_NAME)
    _check_weight_files(local, config)
    _check_encoder_source(local, config)
    try:
        model = from_pretrained(local, is_trainable=is_trainable)
    except (OSError, ValueError, RuntimeError) as error:
        if isinstance(error, UserError):
            raise
        if "size mismatch" in str(error):
            raise encoder_shape_mismatch(local, config) from None
        raise UserError(f"{local}: cannot load the model: {error}") from error
    check_encoder_identity(model, local, allow_mismatch=allow_encoder_mismatch)
    model.loaded_from = str(local)  # named by errors about this model (predict)
    if "scoring_windows" not in config:
        _settings_of_an_older_folder(model, local)
    model.calibration = Calibration.load(local)  # None in folders saved before it
    if "decision_threshold" not in config:  # not a silent 0.5: predict asks for --threshold
        logger.warning("%s: no decision_threshold saved", local / CONFIG_NAME)
        model.config.decision_threshold = None
    return model


def own_files(folder: Path) -> list[str]:
    """The files of `folder` that `load_model` reads, as its manifest names them: every one
    that is there must be listed (`save_for_hub` lists all), so none can change unchecked."""
    names = [
        CONFIG_NAME,
        HEAD_WEIGHTS_NAME,
        ADAPTER_WEIGHTS,
        f"{ADAPTER_DIR}/adapter_config.json",
        CALIBRATION_NAME,
        IDENTITY_NAME,
        TRAINING_CONFIG_NAME,
    ]
    names.append(f"{BASE_ENCODER_DIR}/config.json")
    bundled = sorted((folder / BASE_ENCODER_DIR).glob("*.safetensors"))
    names += [path.relative_to(folder).as_posix() for path in bundled]
    return [name for name in names if (folder / name).is_file()]


def _settings_of_an_older_folder(model: SECAI, folder: Path) -> None:
    """A folder saved before windows existed was trained, and its threshold chosen, on the
    centred crop of its run's `max_residues`: score it that way unless told otherwise."""
    training = folder / TRAINING_CONFIG_NAME
    saved = read_json(training).get("max_residues") if training.is_file() else None
    if isinstance(saved, int) and not isinstance(saved, bool) and saved > 0:
        model.config.max_residues = saved
    model.config.scoring_windows = "crop"
    logger.info(
        "%s: saved before windows existed; scored as it was trained, proteins over %d "
        "residues cropped (--windows all reads every residue)",
        folder,
        model.config.max_residues,
    )


def _check_weight_files(folder: Path, config: dict) -> None:
    """Every safetensors file of the folder opens, and holds finite numbers; name the bad one."""
    files = [folder / HEAD_WEIGHTS_NAME]
    if not config.get("freeze_encoder"):
        files.append(folder / ADAPTER_WEIGHTS)
    for path in files:
        for name, tensor in read_safetensors(path).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CorruptFileError(
                    f"{path}: tensor {name!r} holds NaN or infinite values; the file is "
                    "damaged (or the run diverged): copy or download it again"
                )
    if config.get("encoder") == BASE_ENCODER_DIR:
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


def encoder_shape_mismatch(folder: Path, config: dict) -> UserError:
    """The error for an encoder of another shape than the adapter and head were trained on:
    one sentence and the two fingerprints (torch's own lists every tensor)."""
    encoder = config.get("encoder")
    identity = folder / IDENTITY_NAME
    expected = read_json(identity).get("fingerprint") if identity.is_file() else "not recorded"
    path = folder / BASE_ENCODER_DIR if encoder == BASE_ENCODER_DIR else encoder
    base = EsmModel.from_pretrained(path, add_pooling_layer=False, use_safetensors=True)
    return UserError(
        f"{folder}: the encoder {encoder!r} has another shape than the model was trained on "
        f"(fingerprint {base_encoder_fingerprint(base)}, trained on {expected}); point "
        "`encoder` in secai_config.json at the original weights"
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
        named = read_json(adapter_config).get("base_model_name_or_path")
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
    expected = read_json(identity_path).get("fingerprint")
    found = base_encoder_fingerprint(model.encoder)
    if expected != found:
        message = (
            f"{identity_path}: the encoder {saved!r} has other weights than the model was "
            f"trained on (fingerprint {found}, trained on {expected}); point `encoder` in "
            "secai_config.json at the original weights"
        )
        if not allow_mismatch:
            raise UserError(message + ", or pass --allow_encoder_mismatch to use them anyway")
        logger.warning("%s (allowed by --allow_encoder_mismatch)", message)

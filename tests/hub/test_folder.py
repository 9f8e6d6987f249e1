"""The model folder: its files, its card, loading it in a fresh process or from a Hub repo
id, the merged export, names that cannot leave the folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ppi_dist.data.batching import collate_pairs
from ppi_dist.files import safe_join
from ppi_dist.hub import folder as hub
from ppi_dist.hub import loading
from ppi_dist.hub.card import ModelCard, parse_card_metadata
from ppi_dist.hub.folder import export_merged, save_for_hub
from ppi_dist.hub.loading import load_model
from tests.helpers import PROCESS_LIMIT_S, REPO
from tests.hub.trained import VALIDATION, validation_metrics

FAKE_TOKEN = "hf_FAKEtoken123"
BASE_MODEL = "facebook/esm2_t6_8M_UR50D"


LOAD_AND_SCORE = """
import json, sys
from ppi_dist.data.batching import collate_pairs
from ppi_dist.data.pairs import Pair
from ppi_dist.hub import load_model  # the line every model card shows
pairs = [Pair(*p) for p in json.loads(sys.argv[2])]
model = load_model(sys.argv[1])
print(json.dumps(model.predict_proba(collate_pairs(pairs)).tolist()))
"""


def _probabilities_in_fresh_process(folder) -> torch.Tensor:
    pairs = json.dumps([[p.protein_a, p.protein_b, p.sequence_a, p.sequence_b] for p in VALIDATION])
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SCORE, str(folder), pairs],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT_S,
    )
    assert result.returncode == 0, result.stderr
    return torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))


def test_round_trip_in_a_fresh_process_and_merged_export(trained, tmp_path):
    expected = trained.predict_proba(collate_pairs(VALIDATION))
    save_for_hub(
        trained,
        tmp_path / "model",
        card=ModelCard(metrics=validation_metrics(trained), base_model=BASE_MODEL),
    )
    assert torch.allclose(
        _probabilities_in_fresh_process(tmp_path / "model"), expected, atol=1e-7, rtol=0
    )
    export_merged(trained, tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter").exists()
    config = json.loads((tmp_path / "merged" / "secai_config.json").read_text())
    assert config["freeze_encoder"] and config["encoder"] == "base_encoder"
    merged = _probabilities_in_fresh_process(tmp_path / "merged")
    assert (merged - expected).abs().max() <= 1e-5
    # The merged folder holds a plain EsmModel: no LoRA weights anywhere.
    weights = load_file(tmp_path / "merged" / "base_encoder" / "model.safetensors")
    assert not any("lora" in key for key in weights)


def test_folder_and_model_card(trained, tmp_path):
    metrics = validation_metrics(trained)
    metrics["test"] = dict(metrics["validation"], auroc=0.6123, aupr=0.6456)
    config = {"lr": 1e-4, "epochs": 2, "hub_token": FAKE_TOKEN, "wandb": {"api_key": "k"}}
    (tmp_path / "curve.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    folder = save_for_hub(
        trained,
        tmp_path / "m",
        card=ModelCard(
            metrics=metrics,
            data={"train": "bernett-gold/train.tsv (Intra-1)", "test": "bernett-gold/test.tsv"},
            datasets=["user/bernett-gold"],
            base_model=BASE_MODEL,
            repo_id="user/secai",
        ),
        training_config=config,
        images=[tmp_path / "curve.png"],
    )
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {
        "README.md",
        "metrics.json",
        "training_config.json",
        "secai_config.json",
        "secai_head.safetensors",
        "adapter/adapter_model.safetensors",
        "base_encoder/model.safetensors",
        "plots/curve.png",
    } <= names
    card = (folder / "README.md").read_text()
    metadata = parse_card_metadata(card)
    assert metadata["base_model"] == BASE_MODEL
    assert {"protein", "ppi", "esm2", "lora"} <= set(metadata["tags"])
    assert metadata["library_name"] == "peft" and metadata["datasets"] == ["user/bernett-gold"]
    results = metadata["model-index"][0]["results"]
    test_metrics = {m["type"]: m["value"] for m in results[1]["metrics"]}
    assert results[1]["dataset"]["split"] == "test" and test_metrics["auroc"] == 0.6123
    # The body renders the run's numbers, the baselines and the caveat.
    assert "| AUROC |" in card and "0.6123" in card and "0.6456" in card
    assert f"{metrics['validation']['all_positive_score']:.4f}" in card
    assert "protein-disjoint" in card and "Random pair splits leak" in card
    assert 'load_model("user/secai")' in card and "![curve](plots/curve.png)" in card
    calibration = trained.calibration
    assert "Probabilities: " + ("the raw sigmoid" if calibration is None else "calibrated") in card
    # Credentials never reach the folder.
    for path in folder.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes()
    saved_config = json.loads((folder / "training_config.json").read_text())
    assert saved_config == {"lr": 1e-4, "epochs": 2, "wandb": {}}
    assert json.loads((folder / "metrics.json").read_text())["test"]["auroc"] == 0.6123


def test_merged_card_needs_no_peft(trained, tmp_path):
    save_for_hub(trained, tmp_path / "m", card=ModelCard(base_model=BASE_MODEL), merged=True)
    metadata = parse_card_metadata((tmp_path / "m" / "README.md").read_text())
    assert metadata["library_name"] == "ppi_dist" and metadata["base_model"] == BASE_MODEL
    assert "model-index" not in metadata  # no metrics recorded, none invented


def test_load_from_a_hub_repo_id_downloads_then_loads(trained, tmp_path, monkeypatch):
    save_for_hub(trained, tmp_path / "snapshot", card=ModelCard(base_model=BASE_MODEL))
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(loading, "snapshot_download", fake_snapshot_download)
    model = load_model("user/secai", revision="v1")
    assert calls[0][0] == "user/secai" and calls[0][1]["revision"] == "v1"
    assert set(calls[0][1]["allow_patterns"]) == set(hub.ALLOWED_PATTERNS)
    assert not any("bin" in p or "pt" in p or "py" in p for p in hub.ALLOWED_PATTERNS)
    batch = collate_pairs(VALIDATION)
    assert torch.equal(model.predict_proba(batch), trained.predict_proba(batch))
    with pytest.raises(FileNotFoundError, match="not an SE-CAI"):
        monkeypatch.setattr(loading, "snapshot_download", lambda *a, **k: str(tmp_path))
        load_model("user/other")


def test_file_names_cannot_leave_the_folder(tmp_path):
    assert safe_join(tmp_path, "plots/a.png") == (tmp_path / "plots" / "a.png").resolve()
    for bad in ["../x", "/etc/passwd", "a/../../x", "", "a\\..\\b"]:
        with pytest.raises(ValueError):
            safe_join(tmp_path, bad)
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(ValueError, match="leaves"):
        safe_join(tmp_path, "link/x")


# --------------------------------------------------------------------------- the Hub stand-in


def test_plots_of_several_splits_keep_their_own_names(trained, tmp_path):
    images = []
    for split in ("validation", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "pr_curve.png").write_bytes(split.encode())
        images.append(tmp_path / split / "pr_curve.png")
    folder = save_for_hub(
        trained, tmp_path / "m", card=ModelCard(base_model=BASE_MODEL), images=images
    )
    assert (folder / "plots" / "validation_pr_curve.png").read_bytes() == b"validation"
    assert (folder / "plots" / "test_pr_curve.png").read_bytes() == b"test"
    assert "](plots/test_pr_curve.png)" in (folder / "README.md").read_text()

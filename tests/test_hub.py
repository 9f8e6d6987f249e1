"""Model folder, card, Hub loading and pushing.

Pushing is tested against a stand-in of the Hub's HTTP API: a small `http.server` on
127.0.0.1 that answers the endpoints `HfApi.create_repo`, `create_branch` and
`upload_folder` call (repos/create, branch, validate-yaml, preupload, commit) and records
every request, with `HF_ENDPOINT` pointed at it. The real `huggingface_hub` client runs
unchanged, in a fresh process, through the `python -m ppi_dist.push` command.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

from ppi_dist import hub
from ppi_dist.data import collate_pairs
from ppi_dist.hub import (
    export_merged,
    load_model,
    parse_card_metadata,
    push_folder,
    safe_join,
    save_for_hub,
)
from ppi_dist.metrics import search_threshold
from ppi_dist.model import SECAI
from tests.conftest import REPO, random_pairs, tiny_model

FAKE_TOKEN = "hf_FAKEtoken123"
BASE_MODEL = "facebook/esm2_t6_8M_UR50D"


def _trained_model(steps: int = 6) -> SECAI:
    """A tiny model after a few real optimiser steps (LoRA, cross-attention, head all move)."""
    model = tiny_model(seed=3)
    model.train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    batch = collate_pairs(random_pairs(16, seed=4, proteins=12))
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(model(**batch), batch["labels"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    lora_b = [p for n, p in model.encoder.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # the adapter really changed the encoder
    return model


VALIDATION = random_pairs(10, seed=9, proteins=8)

LOAD_AND_SCORE = """
import json, sys
from ppi_dist.data import Pair, collate_pairs
from ppi_dist.hub import load_model
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
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def trained():
    return _trained_model()


def _metrics(model) -> dict:
    batch = collate_pairs(VALIDATION)
    scores = model.predict_proba(batch).numpy()
    labels = batch["labels"].numpy()
    return {"validation": search_threshold(scores, labels).summary()}


def test_round_trip_in_a_fresh_process_and_merged_export(trained, tmp_path):
    expected = trained.predict_proba(collate_pairs(VALIDATION))
    save_for_hub(trained, tmp_path / "model", metrics=_metrics(trained), base_model=BASE_MODEL)
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
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "merged" / "base_encoder" / "model.safetensors")
    assert not any("lora" in key for key in weights)


def test_folder_and_model_card(trained, tmp_path):
    metrics = _metrics(trained)
    metrics["test"] = dict(metrics["validation"], auroc=0.6123, aupr=0.6456)
    config = {"lr": 1e-4, "epochs": 2, "hub_token": FAKE_TOKEN, "wandb": {"api_key": "k"}}
    (tmp_path / "curve.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    folder = save_for_hub(
        trained,
        tmp_path / "m",
        metrics=metrics,
        training_config=config,
        data={"train": "bernett-gold/train.tsv (Intra-1)", "test": "bernett-gold/test.tsv"},
        datasets=["user/bernett-gold"],
        base_model=BASE_MODEL,
        repo_id="user/secai",
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
    # Credentials never reach the folder.
    for path in folder.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes()
    saved_config = json.loads((folder / "training_config.json").read_text())
    assert saved_config == {"lr": 1e-4, "epochs": 2, "wandb": {}}
    assert json.loads((folder / "metrics.json").read_text())["test"]["auroc"] == 0.6123


def test_merged_card_needs_no_peft(trained, tmp_path):
    save_for_hub(trained, tmp_path / "m", base_model=BASE_MODEL, merged=True)
    metadata = parse_card_metadata((tmp_path / "m" / "README.md").read_text())
    assert metadata["library_name"] == "ppi_dist" and metadata["base_model"] == BASE_MODEL
    assert "model-index" not in metadata  # no metrics recorded, none invented


def test_load_from_a_hub_repo_id_downloads_then_loads(trained, tmp_path, monkeypatch):
    save_for_hub(trained, tmp_path / "snapshot", base_model=BASE_MODEL)
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snapshot")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = load_model("user/secai", revision="v1")
    assert calls[0][0] == "user/secai" and calls[0][1]["revision"] == "v1"
    assert set(calls[0][1]["allow_patterns"]) == set(hub.ALLOWED_PATTERNS)
    assert not any("bin" in p or "pt" in p or "py" in p for p in hub.ALLOWED_PATTERNS)
    batch = collate_pairs(VALIDATION)
    assert torch.equal(model.predict_proba(batch), trained.predict_proba(batch))
    with pytest.raises(FileNotFoundError, match="not an SE-CAI"):
        monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(tmp_path))
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


class _HubStandIn(BaseHTTPRequestHandler):
    """Answers what HfApi.create_repo / create_branch / upload_folder ask; records it all."""

    requests: ClassVar[list[dict]] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        record = {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        type(self).requests.append(record)
        endpoint = f"http://127.0.0.1:{self.server.server_port}"
        if self.path == "/api/repos/create":
            payload = json.loads(body)
            if payload["name"] == "forbidden":
                return self._reply(401, {"error": "Invalid credentials"})
            return self._reply(
                200, {"url": f"{endpoint}/{payload['organization']}/{payload['name']}"}
            )
        if self.path == "/api/validate-yaml":
            return self._reply(200, {"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            modes = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
            ]
            return self._reply(200, {"files": modes})
        if "/commit/" in self.path:
            return self._reply(
                200, {"commitUrl": f"{endpoint}/user/secai/commit/abc123", "commitOid": "abc123"}
            )
        if "/branch/" in self.path:
            return self._reply(200, {})
        return self._reply(404, {"error": f"stand-in does not serve {self.path}"})

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def hub_stand_in():
    _HubStandIn.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _HubStandIn.requests
    server.shutdown()
    server.server_close()


def _push_command(folder, repo_id, endpoint, tmp_path, *extra) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": FAKE_TOKEN,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_VERBOSITY": "debug",
    }
    return subprocess.run(
        [sys.executable, "-m", "ppi_dist.push", str(folder), repo_id, *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _committed_files(commit_body: bytes) -> tuple[dict, dict[str, bytes]]:
    lines = [json.loads(line) for line in commit_body.decode().splitlines() if line.strip()]
    header = next(line["value"] for line in lines if line["key"] == "header")
    files = {
        line["value"]["path"]: base64.b64decode(line["value"]["content"])
        for line in lines
        if line["key"] == "file"
    }
    return header, files


def test_push_uploads_the_exact_folder_and_never_shows_the_token(trained, tmp_path, hub_stand_in):
    endpoint, requests = hub_stand_in
    folder = save_for_hub(
        trained,
        tmp_path / "m",
        metrics=_metrics(trained),
        training_config={"lr": 1e-3},
        base_model=BASE_MODEL,
    )
    (folder / "notes.pkl").write_bytes(b"not uploaded: outside the allowed patterns")
    result = _push_command(
        folder,
        "user/secai",
        endpoint,
        tmp_path,
        "--private",
        "--revision",
        "dev",
        "--commit_message",
        "epoch 3",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("/user/secai/commit/abc123")
    paths = [r["path"] for r in requests]
    assert paths[0] == "/api/repos/create"
    assert json.loads(requests[0]["body"]) == {
        "name": "secai",
        "organization": "user",
        "visibility": "private",
        "type": "model",
    }
    assert "/api/models/user/secai/branch/dev" in paths
    assert "/api/models/user/secai/commit/dev" in paths
    # Every request carried the token from HF_TOKEN (and only in the header).
    assert all(r["auth"] == f"Bearer {FAKE_TOKEN}" for r in requests)
    commit = next(r for r in requests if "/commit/" in r["path"])
    header, files = _committed_files(commit["body"])
    assert header["summary"] == "epoch 3"
    on_disk = {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".pkl"
    }
    assert files == on_disk  # exactly the folder, byte for byte, nothing else
    # The token appears nowhere we wrote: stdout, stderr (debug logging on), the folder.
    assert FAKE_TOKEN not in result.stdout and FAKE_TOKEN not in result.stderr
    for path in folder.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes()
    assert all(FAKE_TOKEN.encode() not in content for content in files.values())


def test_a_refused_push_fails_without_showing_the_token(trained, tmp_path, hub_stand_in):
    endpoint, _ = hub_stand_in
    folder = save_for_hub(trained, tmp_path / "m", base_model=BASE_MODEL)
    result = _push_command(folder, "user/forbidden", endpoint, tmp_path)
    assert result.returncode != 0
    assert "401" in result.stderr
    assert FAKE_TOKEN not in result.stdout + result.stderr


def test_push_refuses_a_folder_holding_the_token(trained, tmp_path, monkeypatch, caplog):
    folder = save_for_hub(trained, tmp_path / "m", base_model=BASE_MODEL)
    (folder / "leak.txt").write_text(f"token={FAKE_TOKEN}")
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    with pytest.raises(ValueError, match="contains the Hub token") as error:
        push_folder(folder, "user/secai")
    assert FAKE_TOKEN not in str(error.value) and FAKE_TOKEN not in caplog.text
    with pytest.raises(FileNotFoundError, match="save the model first"):
        push_folder(tmp_path, "user/secai")


def test_plots_of_several_splits_keep_their_own_names(trained, tmp_path):
    images = []
    for split in ("validation", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "pr_curve.png").write_bytes(split.encode())
        images.append(tmp_path / split / "pr_curve.png")
    folder = save_for_hub(trained, tmp_path / "m", base_model=BASE_MODEL, images=images)
    assert (folder / "plots" / "validation_pr_curve.png").read_bytes() == b"validation"
    assert (folder / "plots" / "test_pr_curve.png").read_bytes() == b"test"
    assert "](plots/test_pr_curve.png)" in (folder / "README.md").read_text()

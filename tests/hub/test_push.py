"""Pushing a model folder to the Hub, against a stand-in of the Hub's HTTP API.

A small `http.server` on 127.0.0.1 answers the endpoints `HfApi.create_repo`,
`create_branch` and `upload_folder` call (repos/create, branch, validate-yaml, preupload,
commit) and records every request, with `HF_ENDPOINT` pointed at it. The real
`huggingface_hub` client runs unchanged, in a fresh process, through the `python -m
ppi_dist.push` command.
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

from ppi_dist.hub.card import ModelCard
from ppi_dist.hub.folder import save_for_hub
from ppi_dist.hub.push import push_folder
from tests.helpers import PROCESS_LIMIT_S, REPO
from tests.hub.trained import validation_metrics

FAKE_TOKEN = "hf_FAKEtoken123"
BASE_MODEL = "facebook/esm2_t6_8M_UR50D"

pytestmark = pytest.mark.multiprocess


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
        timeout=PROCESS_LIMIT_S,
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
        card=ModelCard(metrics=validation_metrics(trained), base_model=BASE_MODEL),
        training_config={"lr": 0.001},
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
    folder = save_for_hub(trained, tmp_path / "m", card=ModelCard(base_model=BASE_MODEL))
    result = _push_command(folder, "user/forbidden", endpoint, tmp_path)
    assert result.returncode != 0
    assert "401" in result.stderr
    assert FAKE_TOKEN not in result.stdout + result.stderr


def test_push_refuses_a_folder_holding_the_token(trained, tmp_path, monkeypatch, caplog):
    folder = save_for_hub(trained, tmp_path / "m", card=ModelCard(base_model=BASE_MODEL))
    (folder / "leak.txt").write_text(f"token={FAKE_TOKEN}")
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    with pytest.raises(ValueError, match="contains the Hub token") as error:
        push_folder(folder, "user/secai")
    assert FAKE_TOKEN not in str(error.value) and FAKE_TOKEN not in caplog.text
    with pytest.raises(FileNotFoundError, match="save the model first"):
        push_folder(tmp_path, "user/secai")

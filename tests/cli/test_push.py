"""`ppi-dist push`: an unreachable Hub, a token no header can carry and a folder that is not a
model are refused in one line (exit 2, no traceback, the token never shown)."""

from __future__ import annotations

import os

import pytest
from huggingface_hub import HfApi

from ppi_dist.cli.push import main
from ppi_dist.hub.push import CLIENT_ERRORS
from tests.cli.expect import in_process, refused, shell
from tests.helpers import PROCESS_LIMIT_S

TOKEN = "hf_é" + "x" * 30  # not ASCII: no HTTP header can carry it


def test_a_token_no_header_can_carry_is_refused_unseen(capsys, model_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    line = refused(*in_process(capsys, main, model_folder, "user/secai"), "not a valid token")
    assert TOKEN not in line and "é" not in line


@pytest.mark.parametrize(
    "error",
    [CLIENT_ERRORS[0]("[Errno -2] Name or service not known"), ConnectionError("refused")],
    ids=["client error", "OSError"],
)
def test_an_unreachable_hub_names_the_host_and_what_to_do(capsys, model_folder, monkeypatch, error):
    """The Hub client stubbed to fail as it does offline (fault injection)."""

    def unreachable(*args, **kwargs):
        raise error

    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    monkeypatch.setattr(HfApi, "create_repo", unreachable)
    line = refused(*in_process(capsys, main, model_folder, "user/secai"), "cannot reach the Hub")
    assert "huggingface.co" in line or "http" in line
    assert f"ppi-dist push {model_folder} user/secai" in line and "nothing was lost" in line


def test_a_folder_that_is_not_a_model_is_refused(capsys, tmp_path):
    refused(*in_process(capsys, main, tmp_path, "user/secai"), str(tmp_path), "save the model")


def test_a_folder_holding_the_token_is_refused_unseen(capsys, model_folder, monkeypatch):
    token = "hf_" + "s" * 30
    (model_folder / "notes.txt").write_text(f"token={token}")
    monkeypatch.setenv("HF_TOKEN", token)
    line = refused(*in_process(capsys, main, model_folder, "user/secai"), "notes.txt")
    assert token not in line


@pytest.mark.multiprocess
def test_a_closed_port_is_one_line_naming_the_endpoint(model_folder, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_" + "x" * 30}
    result = shell(
        "-m", "ppi_dist.push", model_folder, "user/secai", env=env, timeout=PROCESS_LIMIT_S
    )
    refused(result.returncode, result.stderr, "cannot reach the Hub at http://127.0.0.1:9")

"""Pushing a model folder to the Hugging Face Hub.

The token comes from `HF_TOKEN` or the cached `hf auth login` (or the caller); it is passed to
`huggingface_hub.HfApi` only and never printed, logged or written, and a folder that holds
it (a config that captured it) is refused.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from huggingface_hub import HfApi, get_token

from ppi_dist.hub.folder import ALLOWED_PATTERNS
from ppi_dist.models.saving import CONFIG_NAME

logger = logging.getLogger(__name__)


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

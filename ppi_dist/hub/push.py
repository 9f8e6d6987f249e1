"""Pushing a model folder to the Hugging Face Hub.

The token comes from `HF_TOKEN` or the cached `hf auth login` (or the caller); it is passed to
`huggingface_hub.HfApi` only and never printed, logged or written, and a folder that holds
it (a config that captured it) is refused.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError

from ppi_dist.errors import HubUnreachableError, UserError
from ppi_dist.hub.folder import ALLOWED_PATTERNS
from ppi_dist.models.saving import CONFIG_NAME

logger = logging.getLogger(__name__)

# The HTTP client's own errors (no route, DNS, refused, timeout) share a base with the Hub's
# HfHubHTTPError: found from it, whichever client this huggingface_hub version uses.
CLIENT_ERRORS: tuple[type[BaseException], ...] = tuple(
    {cls for cls in HfHubHTTPError.__mro__[1:] if cls.__name__ == "HTTPError"}
) or (OSError,)


def check_token(token: str | None) -> None:
    """A token an HTTP header can carry (printable ASCII, no spaces); the message never
    shows it (a UnicodeEncodeError would quote its characters)."""
    if token is not None and not (token.isascii() and token.isprintable() and " " not in token):
        raise UserError(
            "the Hub token (HF_TOKEN or `hf auth login`) is not a valid token: it holds "
            "spaces or characters outside ASCII; copy it again from "
            "https://huggingface.co/settings/tokens"
        )


def _refuse_token_in_files(folder: Path, token: str | None) -> None:
    """Never upload a folder that contains the token (e.g. a config that captured it)."""
    if not token:
        return
    needle = token.encode()
    for path in folder.rglob("*"):
        if path.is_file() and path.stat().st_size < 50 * 2**20 and needle in path.read_bytes():
            raise UserError(f"{path} contains the Hub token; remove it before pushing")


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
    found = token or os.environ.get("HF_TOKEN") or get_token()
    check_token(found)
    _refuse_token_in_files(folder, found)
    api = HfApi(token=token)
    logger.info(
        "pushing %s to the Hub repo %s%s",
        folder,
        repo_id,
        f" (branch {revision})" if revision else "",
    )
    try:
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
    except HfHubHTTPError:
        raise  # the Hub answered (unknown repo, no permission): its message says why
    except (*CLIENT_ERRORS, OSError) as error:
        raise HubUnreachableError(
            f"cannot reach the Hub at {constants.ENDPOINT} to push {folder} to {repo_id} "
            f"({type(error).__name__}: {error}); nothing was lost: check the connection "
            f"(or HF_ENDPOINT), then run `ppi-dist push {folder} {repo_id}`"
        ) from error
    url = getattr(commit, "commit_url", None) or str(commit)
    logger.info("pushed: %s", url)
    return url

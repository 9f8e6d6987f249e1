"""Output folders belong to one run, one trainer holds a folder, resumes check their
settings, checkpoint rotation keeps the newest."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ppi_dist.errors import ConfigError, RunFolderError
from ppi_dist.files import acquire_lock
from ppi_dist.training import checkpoint as ckpt
from ppi_dist.training.config import TrainConfig
from ppi_dist.training.rundir import LOCK_NAME, check_resume_config, claim_output_dir


def _old_run(folder):
    """A folder as a finished earlier run leaves it."""
    (folder / "checkpoints" / "step_00000004").mkdir(parents=True)
    (folder / "checkpoints" / "step_00000004" / ckpt.COMPLETE).touch()
    (folder / "model").mkdir()
    (folder / "train_log.jsonl").write_text('{"step": 4}\n')
    (folder / "notes.txt").write_text("mine")


def test_fresh_folder_is_claimed_and_lock_released(tmp_path):
    out = tmp_path / "run"
    with claim_output_dir(out, resuming=False, overwrite=False) as lock:
        assert lock.held and (out / LOCK_NAME).is_file()
        assert json.loads((out / LOCK_NAME).read_text())["pid"] > 0
    assert not (out / LOCK_NAME).exists()


def test_folder_of_another_run_is_refused(tmp_path):
    _old_run(tmp_path)
    with pytest.raises(RunFolderError, match=r"holds another run .*--resume_from.*--overwrite"):
        claim_output_dir(tmp_path, resuming=False, overwrite=False)
    assert not (tmp_path / LOCK_NAME).exists()  # refused: the lock is not kept
    assert (tmp_path / "model").is_dir()  # nothing touched


def test_resume_keeps_and_overwrite_clears(tmp_path):
    _old_run(tmp_path)
    claim_output_dir(tmp_path, resuming=True, overwrite=False).release()
    assert (tmp_path / "checkpoints" / "step_00000004").is_dir()
    with pytest.raises(RunFolderError, match="contradict"):
        claim_output_dir(tmp_path, resuming=True, overwrite=True)
    claim_output_dir(tmp_path, resuming=False, overwrite=True).release()
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "model").exists()
    assert not (tmp_path / "train_log.jsonl").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"  # not a run's file: left alone


def test_other_ranks_do_not_lock(tmp_path):
    _old_run(tmp_path)
    assert not claim_output_dir(tmp_path, resuming=False, overwrite=False, is_main=False).held


# Claims the folder, says so, and holds it until its standard input closes ("hold") or
# exits at once.
HOLD = textwrap.dedent("""
    import sys
    from ppi_dist.training.rundir import claim_output_dir
    lock = claim_output_dir(sys.argv[1], resuming=False, overwrite=False)
    print("locked", flush=True)
    if sys.argv[2] == "hold":
        sys.stdin.read()
""")


@pytest.mark.multiprocess
def test_two_processes_contend_for_one_folder(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out), "hold"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"in use by another trainer \\(pid {holder.pid}"):
            claim_output_dir(out, resuming=False, overwrite=False)
        second = subprocess.run(
            [sys.executable, "-c", HOLD, str(out), "exit"], capture_output=True, text=True
        )
        assert second.returncode != 0 and "in use by another trainer" in second.stderr
    finally:
        holder.kill()
        holder.wait()
    # Killed holder: the OS dropped its flock; the file it left is stale and taken over.
    assert (out / LOCK_NAME).is_file()
    with claim_output_dir(out, resuming=False, overwrite=False) as lock:
        assert lock.held


@pytest.mark.multiprocess
def test_lock_released_at_exit(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", HOLD, str(tmp_path), "exit"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / LOCK_NAME).exists()
    acquire_lock(tmp_path / LOCK_NAME).release()


def test_resume_refuses_changed_settings_unless_overridden():
    saved = TrainConfig.from_dict({"learning_rate_head": 1e-3}).to_dict()
    changes = {"learning_rate_head": 5e-4, "output_dir": "elsewhere", "log_every": 3}
    current = TrainConfig.from_dict(changes).to_dict()
    with pytest.raises(
        ConfigError, match=r"learning_rate_head: 0\.001 -> 0\.0005.*--resume_override"
    ):
        check_resume_config(saved, current)
    changed = check_resume_config(saved, current, override="learning_rate_head")
    assert changed == ["learning_rate_head: 0.001 -> 0.0005"]
    assert check_resume_config(saved, TrainConfig.from_dict({"log_every": 1}).to_dict()) == []
    with pytest.raises(ConfigError, match="unknown"):
        check_resume_config(saved, current, override=["no_such_setting"])


def test_keep_checkpoints_zero_is_refused():
    with pytest.raises(ConfigError, match="keep_checkpoints must be at least 1"):
        TrainConfig.from_dict({"keep_checkpoints": 0})

#!/bin/bash
# Refresh requirements/lock.txt, the versions setup.sh installs (CI and the README's
# commands), from pyproject.toml's ranges and requirements/pins.txt, with uv. Run it, then
# `bash scripts/test.sh`, and commit the lock with the tests passing.
#   bash scripts/lock.sh                      # newest releases within the ranges
#   bash scripts/lock.sh --upgrade-package X  # only X moves (any uv pip compile flag)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
# Universal: one file for every Python the project supports, the versions per Python as
# markers; the suite is run on the machine's own.
uv pip compile pyproject.toml --extra dev --extra split --universal \
  --python-version 3.10 --constraint requirements/pins.txt --quiet \
  --output-file requirements/lock.txt "$@"
git --no-pager diff --stat -- requirements/lock.txt

#!/bin/bash
# Run the suite against the newest releases pyproject.toml allows, in a throwaway
# environment, so a release that breaks ppi_dist is seen before it reaches users.
# torch stays at the locked release (TORCH=SPEC to try another, e.g. TORCH=torch==2.14.1).
# Arguments go to pytest. Prints which versions differ from requirements/lock.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$VENV")"' EXIT
python3 -m venv "$VENV"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
TORCH=${TORCH:-torch==$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' requirements/lock.txt)}
pip install --quiet "$TORCH"
pip install --quiet --upgrade -e ".[dev,split]"
echo "newest releases here, against the lock:"
pip freeze --exclude-editable | python3 -c '
import re, sys
locked = {}
for line in open("requirements/lock.txt"):
    m = re.match(r"([A-Za-z0-9_.-]+)==([^ ;]+)", line)
    if m:
        locked.setdefault(m[1].lower().replace("_", "-"), set()).add(m[2])
for line in sys.stdin:
    name, _, version = line.strip().partition("==")
    key = name.lower().replace("_", "-")
    if key in locked and version.split("+")[0] not in locked[key]:
        print(f"  {name} {version} (lock: {sorted(locked[key])[-1]})")
'
ruff check ppi_dist tests benchmarks
python -m pytest "$@"

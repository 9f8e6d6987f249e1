"""ppi_dist: SE-CAI, a Siamese ESM-2 cross-attention protein-protein interaction trainer.

What a script needs, importable from here (each loads its subpackage on first use):

    import ppi_dist
    model = ppi_dist.load_model("outputs/run/model")              # a folder or a Hub repo id
    source = ppi_dist.PairSource("test.tsv", fasta="seqs.fasta")  # validated, located errors
    scored = ppi_dist.score_pairs(model, list(source.pair_rows()))
    print(ppi_dist.evaluate_at(scored.scores, scored.labels, model.config.decision_threshold))

The package is in layers that import one way (docs/architecture.md): `models` -> `data` ->
`inference` -> `evaluation` -> `hub` -> `training` -> `cli`, over `errors`, `checks`, `files`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

# peft still calls transformers' deprecated `is_gradient_checkpointing` alias; the warning
# is theirs to fix and would otherwise print on every model build.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)

__version__ = "0.1.0"

# name -> the module that defines it
_PUBLIC = {
    "SECAI": "ppi_dist.models.secai",
    "SECAIConfig": "ppi_dist.models.config",
    "Pair": "ppi_dist.data.pairs",
    "PairSource": "ppi_dist.data.pairs",
    "read_fasta": "ppi_dist.data.fasta",
    "EmbeddingCache": "ppi_dist.inference.cache",
    "ScoredPairs": "ppi_dist.inference.scoring",
    "score_pairs": "ppi_dist.inference.scoring",
    "explain_pair": "ppi_dist.inference.explain",
    "Windowing": "ppi_dist.models.windows",
    "PredictOptions": "ppi_dist.inference.predict",
    "search_threshold": "ppi_dist.evaluation.threshold",
    "evaluate_at": "ppi_dist.evaluation.threshold",
    "bootstrap_intervals": "ppi_dist.evaluation.bootstrap",
    "load_model": "ppi_dist.hub.loading",
    "save_for_hub": "ppi_dist.hub.folder",
    "push_folder": "ppi_dist.hub.push",
    "TrainConfig": "ppi_dist.training.config",
    "load_config": "ppi_dist.training.recipes",
    "UserError": "ppi_dist.errors",
    "DataError": "ppi_dist.errors",
    "ConfigError": "ppi_dist.errors",
}
__all__ = [
    "SECAI",
    "ConfigError",
    "DataError",
    "EmbeddingCache",
    "Pair",
    "PairSource",
    "PredictOptions",
    "SECAIConfig",
    "ScoredPairs",
    "TrainConfig",
    "UserError",
    "Windowing",
    "bootstrap_intervals",
    "evaluate_at",
    "explain_pair",
    "load_config",
    "load_model",
    "push_folder",
    "read_fasta",
    "save_for_hub",
    "score_pairs",
    "search_threshold",
]
assert set(__all__) == set(_PUBLIC)

if TYPE_CHECKING:
    from ppi_dist.data.fasta import read_fasta
    from ppi_dist.data.pairs import Pair, PairSource
    from ppi_dist.errors import ConfigError, DataError, UserError
    from ppi_dist.evaluation.bootstrap import bootstrap_intervals
    from ppi_dist.evaluation.threshold import evaluate_at, search_threshold
    from ppi_dist.hub.folder import save_for_hub
    from ppi_dist.hub.loading import load_model
    from ppi_dist.hub.push import push_folder
    from ppi_dist.inference.cache import EmbeddingCache
    from ppi_dist.inference.explain import explain_pair
    from ppi_dist.inference.predict import PredictOptions
    from ppi_dist.inference.scoring import ScoredPairs, score_pairs
    from ppi_dist.models.config import SECAIConfig
    from ppi_dist.models.secai import SECAI
    from ppi_dist.models.windows import Windowing
    from ppi_dist.training.config import TrainConfig
    from ppi_dist.training.recipes import load_config


def __getattr__(name: str) -> Any:
    # Loaded on first use, so `import ppi_dist` (and every command) stays quick.
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ppi_dist' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]

"""`evaluate --cache_dir`: a cache that covers the proteins from this encoder is read, any
other is replaced by these proteins' states."""

from __future__ import annotations

from ppi_dist.data.pairs import sequences_of
from ppi_dist.evaluation.evaluate import reusable_cache
from ppi_dist.inference.scoring import encode_proteins
from ppi_dist.models.windows import Windowing
from tests.helpers import random_pairs, tiny_model


def test_a_covering_cache_is_read_and_another_encoders_is_replaced(tmp_path):
    model, other = tiny_model(seed=0), tiny_model(seed=1)
    pairs = random_pairs(30, seed=3, proteins=40)
    folder, index = tmp_path / "states", tmp_path / "states" / "index.json"
    encode_proteins(model, sequences_of(pairs), directory=folder)  # say a frozen run's cache
    written = index.stat().st_mtime_ns
    some = pairs[:10]
    own = model.config.windowing("scoring")
    cache = reusable_cache(model, some, folder, own)
    assert index.stat().st_mtime_ns == written and len(cache) == len(sequences_of(pairs))
    replaced = reusable_cache(other, some, folder, own)  # other weights: encoded again
    assert replaced.matches(other) and len(replaced) == len(sequences_of(some))
    crop = Windowing(512, 0, "crop")
    assert reusable_cache(other, some, folder, crop).windowing == crop  # another windowing

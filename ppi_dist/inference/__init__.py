"""Scoring with a model outside training: the embedding cache (`cache`), the one scoring
path (`scoring`), what `predict` scores in which order (`plans`) and `predict` itself
(`predict`). Ranks are given to it (`scoring.Ranks`); it forms no process group."""

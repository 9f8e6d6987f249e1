"""From pair files to batches: reading files (`reading`, `fasta`), sequences (`sequences`),
the one pair record and its source (`pairs`), token-budget batches (`batching`) and their
loader (`loader`), the embedded synthetic task (`synthetic`) and the protein-disjoint split
(`split`). Above `models` (its packing layout); no `accelerate`."""

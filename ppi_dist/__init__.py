"""ppi_dist: SE-CAI, a Siamese ESM-2 cross-attention protein-protein interaction trainer."""

import warnings

# peft still calls transformers' deprecated `is_gradient_checkpointing` alias; the warning
# is theirs to fix and would otherwise print on every model build.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)

__version__ = "0.1.0"

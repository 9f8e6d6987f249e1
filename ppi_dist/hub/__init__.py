"""The model folder users download (`folder`, `card`), loading it anywhere (`loading`) and
pushing it to the Hugging Face Hub (`push`).

    from ppi_dist.hub import load_model       # the line every model card shows
    model = load_model("user/secai-bernett")   # a local folder or a Hub repo id
"""

from ppi_dist.hub.card import ModelCard
from ppi_dist.hub.folder import export_merged, save_for_hub
from ppi_dist.hub.loading import load_model
from ppi_dist.hub.push import push_folder

__all__ = ["ModelCard", "export_merged", "load_model", "push_folder", "save_for_hub"]

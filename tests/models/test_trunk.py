"""`lora_layers`: LoRA on the last N layers, and the top layers run over the trunk's states
compute what the whole encoder computes: states, logits and gradients."""

from __future__ import annotations

import pytest
import torch

from ppi_dist.data.batching import collate_pairs
from ppi_dist.errors import ConfigError
from ppi_dist.models.saving import from_pretrained, save_pretrained
from ppi_dist.models.shapes import tiny_esm2_config
from ppi_dist.models.windows import Windowing
from tests.helpers import random_pairs, tiny_model

# fp32 on the CPU: the two paths run the same operators on the same rows; seen: 0 or ~1e-7.
TOLERANCE = {"atol": 1e-6, "rtol": 1e-5}


def _top_two_of_four(seed: int = 0):
    """4 layers, LoRA on layers 2 and 3, with nonzero LoRA weights (B starts at zero)."""
    config = tiny_esm2_config(layers=4)
    model = tiny_model(seed, encoder_config=config, lora_layers=2, lora_dropout=0.0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    return model


def _trunk_states(model, batch) -> torch.Tensor:
    """What the trunk cache stores for the batch's encoder rows: every real token, flat."""
    with torch.no_grad():
        states = model.encode_trunk(batch["input_ids"], batch["attention_mask"])
    return states[batch["attention_mask"].bool()]


def test_lora_layers_adapts_the_last_layers_only():
    model = _top_two_of_four()
    adapted = {
        name.split(".layer.")[1].split(".")[0]
        for name, p in model.named_parameters()
        if p.requires_grad and "lora_" in name
    }
    assert adapted == {"2", "3"}
    assert model.trunk_depth == 2
    assert tiny_model(encoder_config=tiny_esm2_config(layers=4)).trunk_depth == 0
    assert tiny_model(freeze_encoder=True).trunk_depth == 2  # frozen: the whole encoder
    with pytest.raises(ConfigError, match="lora_layers 5: the encoder has 4 layers"):
        tiny_model(encoder_config=tiny_esm2_config(layers=4), lora_layers=5)


def test_top_layers_over_the_trunk_give_the_whole_encoders_logits_and_gradients():
    """A batch with windowed proteins (stitched): the trunk path's logits and its LoRA and
    head gradients equal the whole encoder's."""
    model = _top_two_of_four().train()
    windowing = Windowing(max_residues=16, overlap=4, mode="all")
    batch = collate_pairs(random_pairs(8, seed=2, proteins=7), windowing=windowing)
    assert "stitch_index" in batch  # some protein is read as several windows
    trunk = _trunk_states(model, batch)

    def logits_and_grads(**extra):
        model.zero_grad()
        logits, first_pass = model(**batch, **extra, with_first_pass=True)
        both, labels = torch.cat([logits, first_pass]), batch["labels"].repeat(2)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(both, labels)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return logits.detach(), grads

    whole_logits, whole_grads = logits_and_grads()
    top_logits, top_grads = logits_and_grads(trunk_states=trunk)
    torch.testing.assert_close(top_logits, whole_logits, **TOLERANCE)
    assert whole_grads.keys() == top_grads.keys()
    assert any("lora_A" in name for name in top_grads)
    for name, grad in whole_grads.items():
        assert grad.abs().sum() > 0, name  # every trainable weight gets a gradient
        torch.testing.assert_close(top_grads[name], grad, **TOLERANCE, msg=name)


def test_trunk_states_in_half_precision_are_taken_in_the_weights_precision():
    model = _top_two_of_four().eval()
    batch = collate_pairs(random_pairs(4, seed=5))
    trunk = _trunk_states(model, batch)
    with torch.no_grad():
        whole = model(**batch)
        half = model(**batch, trunk_states=trunk.to(torch.float16))
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, whole, atol=5e-3, rtol=0)


def test_lora_layers_is_saved_and_reloaded(tmp_path):
    model = _top_two_of_four().eval()
    save_pretrained(model, tmp_path / "model")
    loaded = from_pretrained(tmp_path / "model").eval()
    assert loaded.config.lora_layers == 2 and loaded.trunk_depth == 2
    adapter = (tmp_path / "model" / "adapter" / "adapter_config.json").read_text()
    assert '"layers_to_transform": [\n    2,\n    3\n  ]' in adapter
    batch = collate_pairs(random_pairs(6, seed=4))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch), model(**batch), **TOLERANCE)

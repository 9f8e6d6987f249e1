"""The trainable-parameter report on the ESM-2 650M shape (meta device, no weights)."""

from __future__ import annotations

from transformers import EsmConfig

from ppi_dist.cli.parameters import main as parameter_report_main
from ppi_dist.models.parameters import lora_parameter_count
from ppi_dist.models.shapes import RELEASED, encoder_config_of


def test_parameter_report_for_the_650m_shape(capsys):
    parameter_report_main(["--shape", "650M", "--lora_r", "8"])
    printed = capsys.readouterr().out
    config = EsmConfig(**encoder_config_of("650M"))
    closed_form = lora_parameter_count(config, 8, ["query", "value"])
    assert closed_form == 33 * 2 * 8 * (1280 + 1280)
    assert f"LoRA r=8 on query/value, last 33 of 33 layers:  {closed_form:,}" in printed
    assert "ESM-2 base (frozen):        649,400,981" in printed
    assert "trunk" not in printed  # every layer adapted: nothing below LoRA to cache


def test_parameter_report_with_lora_on_the_last_8_layers(capsys):
    parameter_report_main(["--shape", "650M", "--lora_r", "8", "--lora_layers", "8"])
    printed = capsys.readouterr().out
    config = EsmConfig(**encoder_config_of("650M"))
    assert lora_parameter_count(config, 8, ["query", "value"], 8) == 8 * 2 * 8 * 2560
    assert "last 8 of 33 layers:  327,680 (0.050% of 649,400,981)" in printed
    assert "closed form 327,680" in printed  # the model built on the meta device agrees
    assert "layers 0-24" in printed


def test_the_8m_shape_is_the_shared_8m_models():
    """The registry's 8M shape is the real esm2_t6_8M's (../shared/models)."""
    assert RELEASED["8M"] == (320, 6, 20)
    shape = encoder_config_of("8M")
    assert shape["intermediate_size"] == 1280 and shape["max_position_embeddings"] == 1026

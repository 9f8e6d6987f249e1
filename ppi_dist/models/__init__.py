"""The model: SE-CAI (`secai`), its settings (`config`), the ESM-2 encoder and LoRA
(`encoder`), the one registry of ESM-2 shapes (`shapes`), packed encoding (`packing`,
`attention`), `torch.compile` (`compile`), its own files (`saving`) and its parameter
count (`parameters`). Imports nothing else of ppi_dist but the base (`errors`, `checks`)."""

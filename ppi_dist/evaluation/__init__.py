"""What scores are worth: metrics (`metrics`), the decision threshold (`threshold`),
bootstrap intervals (`bootstrap`), plots (`plots`), the leakage audit (`audit`), a saved
model on a labelled file (`evaluate`), a predictions file's report (`report`) and the
`evaluate`-library module (`ppi_metric/`)."""

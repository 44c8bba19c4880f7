"""Superposed models with known features: `compress` squeezes a compiled model's
residual stream through a learnt projection whose rows are the true features; SAEs
trained on it are scored against them; sweeps measure both as the width shrinks."""

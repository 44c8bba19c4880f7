"""Looking inside a compiled model: per-head and per-SOp checks against the evaluator,
pictures (attention heatmaps, the program graph), the colours they share, and the
glossary of the layer plan's words."""

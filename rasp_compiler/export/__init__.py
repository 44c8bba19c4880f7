"""Exporting a compiled model to the tools researchers use: TransformerLens's
`HookedTransformer` and safetensors files."""

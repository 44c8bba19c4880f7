"""What a compiled model is and how it runs: the residual layout and readouts, the
token encoding, the forward pass and its hook names, the runtime (dense and sparse),
the tracr-shaped view, the saved-model format, and `CompiledModel` itself.

Imports only `lang` (a saved model never needs the compiler). `CompiledModel`'s
convenience methods (diagnostics, pictures, export, circuits) import the tools above
when called: the one upward edge, listed in tests/test_layers.py."""

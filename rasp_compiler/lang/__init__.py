"""The RASP language and what a program means: expressions (`rasp`), the library of
programs (`lib`), the expression graph, value identity, and the evaluators (one input,
a batch, the causal reading).

The bottom layer: it imports nothing else of the package except `errors`."""

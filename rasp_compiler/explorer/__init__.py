"""The explorer: one page that shows a model's layer plan, residual stream, heads and
circuit on inputs you type, served locally or written as a static file, and the
notebook display built on it. An application, beside the command line: it may use
every tool below it."""

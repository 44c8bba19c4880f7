"""Bundled RASP programs, one per file; load them with `rasp_compiler.program_files.load_program`.

Every file has a docstring (first line: what it computes), `VOCAB`, `MAX_SEQ_LEN`,
`EXAMPLES` (input, expected output) and a factory `program()`.
"""

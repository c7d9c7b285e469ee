"""Subcommands of the `two-stream` command line: one module each, with `HELP` and `main(argv)`.

These modules are entry points: they parse arguments and call library functions with plain values.
"""

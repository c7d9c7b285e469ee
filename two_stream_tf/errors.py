"""Errors caused by user input.

A `UserError` is a mistake in what the user gave us (a file, a line in it, a video, a flag), not a bug.
Its message names what is wrong and where. Entry points print the message without a traceback and exit
with status 2; library callers can catch it like any exception.

`UserError` is a `ValueError`: a bad value is what it reports, so code that already handles
`ValueError` for bad arguments (as Keras and NumPy callers do) handles it too.
"""


class UserError(ValueError):
    """Bad user input: the message says what is wrong and where (file:line, video, flag)."""

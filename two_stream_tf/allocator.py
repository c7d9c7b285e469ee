"""TensorFlow's host memory allocator: a pooling one, so that big tensors do not cost page faults.

By default TensorFlow takes CPU tensors from the C library's `malloc`, which maps every block above its
threshold (32 MB at most in glibc) fresh from the kernel and hands it back when it is freed. An input
pipeline makes a 4 MB float32 flow stack per sample and a 128 MB batch of 32 of them, so each stack
touched about 2,000 fresh pages, each one faulted in and zeroed by the kernel: on the 2-core development
machine that cost about as much CPU as decoding the stack's 20 JPEGs (`benchmarks/README.md`, Input
pipeline). TensorFlow's BFC allocator keeps the memory it takes and reuses it; TensorFlow chooses it when
`TF_CPU_ALLOCATOR_USE_BFC` is true at the moment it makes its first CPU tensor.

Importing `two_stream_tf` sets that variable to true unless it is set already (set it to false to keep
`malloc`). It has no effect in a process that ran TensorFlow ops before: import `two_stream_tf` first, or
export the variable before starting Python.
"""
import os

ENVIRONMENT_VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"


def use_pooling_allocator(environ=os.environ):
    """Asks TensorFlow for its pooling (BFC) CPU allocator unless the variable is set already.

    Args:
      environ: the environment to change (the process's by default).

    Returns:
      The value of `TF_CPU_ALLOCATOR_USE_BFC` now in `environ`.
    """
    return environ.setdefault(ENVIRONMENT_VARIABLE, "true")

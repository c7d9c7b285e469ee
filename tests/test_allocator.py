"""Importing two_stream_tf makes TensorFlow pool its host memory (BFC) unless the user chose otherwise."""
import os
import subprocess
import sys

import pytest

from two_stream_tf import allocator

# Prints the variable as TensorFlow saw it, then TensorFlow's CPU allocator statistics after a 4 MB tensor,
# or "no stats" (plain malloc keeps none).
PROBE = """
{imports}
import os
import tensorflow as tf
x = tf.zeros([1024, 1024]) + 1.0
print("variable", os.environ.get("TF_CPU_ALLOCATOR_USE_BFC"))
try:
    print("peak", tf.config.experimental.get_memory_info("CPU:0")["peak"])
except ValueError:
    print("no stats")
"""


def run_probe(environment_value, imports="import two_stream_tf"):
    env = {k: v for k, v in os.environ.items() if k != allocator.ENVIRONMENT_VARIABLE}
    if environment_value is not None:
        env[allocator.ENVIRONMENT_VARIABLE] = environment_value
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-2:]


@pytest.mark.parametrize("imports", ["import two_stream_tf", "import tensorflow\nimport two_stream_tf"])
def test_import_selects_the_pooling_allocator(imports):
    # Also when TensorFlow was imported first, as long as no op ran before two_stream_tf was imported.
    variable, line = run_probe(None, imports)
    assert variable == "variable true"
    assert line.startswith("peak "), line
    assert int(line.split()[1]) >= 4 * 1024 * 1024  # the 4 MB tensor came from the pool


def test_a_users_choice_is_kept():
    variable, line = run_probe("false")
    assert variable == "variable false"
    # TensorFlow then allocates as it would without two_stream_tf: plain malloc, which keeps no statistics,
    # except in builds where oneDNN is on (CPUs with AVX512-VNNI and the like), whose allocator keeps them.
    assert line == run_probe("false", imports="")[1]


def test_use_pooling_allocator_sets_only_an_unset_variable():
    environ = {}
    assert allocator.use_pooling_allocator(environ) == "true"
    assert environ == {allocator.ENVIRONMENT_VARIABLE: "true"}
    environ = {allocator.ENVIRONMENT_VARIABLE: "0"}
    assert allocator.use_pooling_allocator(environ) == "0"
    assert environ == {allocator.ENVIRONMENT_VARIABLE: "0"}

"""Flow quantisation equals dense_flow's CAST macro (double arithmetic, OpenCV's cvRound) value for value.

The reference is dense_flow's macro itself, compiled: `cvRound(255 * (v - L) / (H - L))` on a float
promoted to double, with OpenCV's x86 cvRound (`_mm_cvtsd_si32`, round half to even under the default
rounding mode). That cvRound's tie rule is also checked against cv2.
"""
import ctypes
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from two_stream_tf.flow.quantize import quantize_flow

_SOURCE = r"""
#include <emmintrin.h>
static int cv_round(double value) { return _mm_cvtsd_si32(_mm_set_sd(value)); }
#define CAST(v, L, H) ((v) > (H) ? 255 : (v) < (L) ? 0 : cv_round(255*((v) - (L))/((H)-(L))))
void quantize(const float* flow, unsigned char* out, long count, double lower, double higher) {
  for (long i = 0; i < count; ++i) { float x = flow[i]; out[i] = (unsigned char)CAST(x, lower, higher); }
}
"""


@pytest.fixture(scope="module")
def dense_flow_cast(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for the dense_flow reference")
    folder = tmp_path_factory.mktemp("cast")
    (folder / "cast.c").write_text(_SOURCE)
    subprocess.run([compiler, "-O2", "-msse2", "-shared", "-fPIC", str(folder / "cast.c"), "-o",
                    str(folder / "cast.so")], check=True)
    library = ctypes.CDLL(str(folder / "cast.so"))

    def cast(flow, bound):
        flow = np.ascontiguousarray(flow, dtype=np.float32)
        out = np.empty(flow.shape, np.uint8)
        library.quantize(flow.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                         ctypes.c_long(flow.size), ctypes.c_double(-bound), ctypes.c_double(bound))
        return out

    return cast


def test_cvround_rounds_half_to_even_in_opencv():
    # saturate_cast<uchar>(double) is cvRound: exact halves go to the even neighbour.
    halves = (np.arange(255) + 0.5)[None]
    np.testing.assert_array_equal(cv2.convertScaleAbs(halves)[0], np.rint(halves[0]))
    assert cv2.convertScaleAbs(np.array([[2.5, 3.5]]))[0].tolist() == [2, 4]


@pytest.mark.parametrize("bound", [20.0, 15.0])
def test_quantize_equals_dense_flow_on_a_million_random_values(dense_flow_cast, bound):
    rng = np.random.default_rng(int(bound))
    flow = rng.uniform(-1.2 * bound, 1.2 * bound, 1_000_000).astype(np.float32)
    np.testing.assert_array_equal(quantize_flow(flow, bound), dense_flow_cast(flow, bound))


@pytest.mark.parametrize("bound", [20.0, 15.0])
def test_quantize_equals_dense_flow_on_every_half_step(dense_flow_cast, bound):
    # The floats nearest to each half step v_k = (k + 1/2) 2B / 255 - B and their 8 neighbours each side,
    # plus the bounds themselves: where float32 arithmetic would round the other way.
    centres = ((np.arange(255) + 0.5) * (2 * bound) / 255 - bound).astype(np.float32)
    flow = [centres]
    for _ in range(8):
        flow.insert(0, np.nextafter(flow[0], np.float32(-np.inf)))
        flow.append(np.nextafter(flow[-1], np.float32(np.inf)))
    flow = np.concatenate(flow + [np.float32([-bound, bound, 0.0, -0.0])])
    ours, theirs = quantize_flow(flow, bound), dense_flow_cast(flow, bound)
    np.testing.assert_array_equal(ours, theirs)
    # The half steps really are ties for some values: both neighbours of a level occur at its centres.
    assert len(np.unique(theirs[: 17 * 255])) == 256


def test_float32_arithmetic_would_differ_somewhere(dense_flow_cast):
    """What the double buys: the float32 formula disagrees with dense_flow near half steps."""
    bound = 20.0
    centres = ((np.arange(255) + 0.5) * (2 * bound) / 255 - bound).astype(np.float32)
    flow = np.concatenate([centres, np.nextafter(centres, np.float32(1)), np.nextafter(centres, np.float32(-1))])
    in_float32 = np.rint(np.float32(255) * (flow + np.float32(bound)) / np.float32(2 * bound)).astype(np.uint8)
    assert (in_float32 != dense_flow_cast(flow, bound)).any()
    np.testing.assert_array_equal(quantize_flow(flow, bound), dense_flow_cast(flow, bound))

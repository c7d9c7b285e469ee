"""The pipelines' compiled training-view kernels: built on first use, cached, and optional.

`flow_stacks_op()`, `rgb_views_op()` and `jpeg_sizes_op()` return the `TwoStreamFlowStacks`,
`TwoStreamRgbViews` and `TwoStreamJpegSizes` ops (see `views.cc`), compiling them the first time with the
C++ compiler (`$CXX`, else `g++` or `c++`) against the installed TensorFlow's headers and libraries, which
every TensorFlow wheel ships for custom ops. The shared library is cached in
`$TWO_STREAM_TF_CACHE` (default `~/.cache/two_stream_tf`), keyed by the source, the TensorFlow version and
the CPU (it is built with `-march=native`), so later processes load it in milliseconds. It is compiled
on the machine that runs it rather than shipped prebuilt because a custom op must match the exact
TensorFlow build it loads into.

When there is no compiler, the build fails, or `TWO_STREAM_TF_NATIVE=0` is set, they return None (with
one logged warning when a build was attempted and failed) and the pipelines use TensorFlow ops for the
same tensors (within float rounding, ~1e-6). Processes that run a pipeline's graph elsewhere — tf.data
service workers — load it too (`two-stream data-service worker` does).
"""
import hashlib
import logging
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import threading

logger = logging.getLogger(__name__)

SOURCE = pathlib.Path(__file__).with_name("views.cc")
ENABLE_VARIABLE = "TWO_STREAM_TF_NATIVE"
CACHE_VARIABLE = "TWO_STREAM_TF_CACHE"

_lock = threading.Lock()
_loaded = {}


def enabled():
    """Whether the compiled kernel may be used (`TWO_STREAM_TF_NATIVE` is not 0/false/no/off)."""
    return os.environ.get(ENABLE_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")


def compiler():
    """The C++ compiler to use, or None: `$CXX`, else `g++`, else `c++` on the PATH."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++"]
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_signature():
    # -march=native code must not be loaded on another CPU model (a cache in a shared home directory).
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor()


def build_command(cxx, source, output):
    """The compiler command line that builds `source` into the shared library `output`.

    Raises:
      RuntimeError: this TensorFlow has no `libtensorflow_cc` (which holds the JPEG decoder) to link.
    """
    import tensorflow as tf

    library_dir = pathlib.Path(tf.sysconfig.get_lib())
    # The JPEG decoder the kernel calls lives in libtensorflow_cc, which get_link_flags() does not name.
    libraries = [library_dir / name for name in ("libtensorflow_cc.so.2", "libtensorflow_cc.2.dylib")]
    library = next((path for path in libraries if path.exists()), None)
    if library is None:
        raise RuntimeError(f"no libtensorflow_cc in {library_dir}")
    flags = ["-std=c++17", "-O3", "-march=native", "-fPIC", "-shared", "-w"]
    if "avx512_fp16" in _cpu_signature().split():
        # TensorFlow's Eigen headers do not compile with AVX512-FP16 enabled (GCC 12: "expected initializer
        # before '<'" in PacketMathFP16.h); the kernels use no half floats.
        flags.append("-mno-avx512fp16")
    return ([cxx, *flags, str(source), "-o", str(output), *tf.sysconfig.get_compile_flags(),
             *tf.sysconfig.get_link_flags(), str(library), f"-Wl,-rpath,{library_dir}"])


def library_path():
    """Where the compiled kernel for this source, TensorFlow and CPU is cached."""
    import tensorflow as tf

    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), tf.__version__.encode(), tf.sysconfig.get_lib().encode(),
                                     platform.machine().encode(), _cpu_signature().encode()])).hexdigest()[:16]
    cache = pathlib.Path(os.environ.get(CACHE_VARIABLE) or pathlib.Path.home() / ".cache" / "two_stream_tf")
    return cache / "native" / key / "views.so"


def build(output):
    """Compiles the kernel into `output` (atomically: concurrent builders each write a temporary file).

    Raises:
      RuntimeError: no compiler, or the compiler failed (its output in the message).
    """
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".so", dir=output.parent)
    os.close(handle)
    try:
        result = subprocess.run(build_command(cxx, SOURCE, temporary), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed:\n{(result.stderr or result.stdout)[-2000:]}")
        os.replace(temporary, output)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def flow_stacks_op():
    """The `TwoStreamFlowStacks` op as a Python function, or None when the kernels cannot be used here.

    The op: `(contents string [N, 2L], windows int32 [N, 4], flips bool [N], keep bool [N], image_size,
    zero, scale, frame_height=0, frame_width=0, accurate_dct=False) -> (stacks float32 [N, image_size,
    image_size, 2L], failed bool [N, 2L])`, the training view of each stack as `augment.flow_view` makes it with values `(q - zero) * scale`
    (see `augment.flow_affine`), zeros where `keep` is false. With a frame size, planes stored at another
    size are resized to it as `cv2.resize` does before the window is cropped (`frame_resize`);
    `accurate_dct` decodes with libjpeg's accurate IDCT (`dct_method="INTEGER_ACCURATE"`). The second output marks the planes of kept stacks it could not
    decode in their window (damaged data, another size; that stack is zeros).
    """
    library = load()
    return None if library is None else library.two_stream_flow_stacks


def rgb_views_op():
    """The `TwoStreamRgbViews` op as a Python function, or None when the kernels cannot be used here.

    The op: `(contents string [N], windows int32 [N, 4], flips bool [N], keep bool [N], image_size,
    scale, shift, bgr) -> float32 [N, image_size, image_size, 3]`, the training view of each frame as
    `augment.rgb_view` makes it for a normalisation `out = v * scale[c] + shift[c]` of the resized 0..255
    values (in B, G, R order when `bgr`; see `augment.rgb_affine`), zeros where `keep` is false. The
    attributes frame_height, frame_width and accurate_dct are those of `flow_stacks_op`. A second output,
    `failed bool [N]`, marks kept frames it could not decode in their window (their view is zeros).
    """
    library = load()
    return None if library is None else library.two_stream_rgb_views


def jpeg_sizes_op():
    """The `TwoStreamJpegSizes` op as a Python function, or None when the kernels cannot be used here.

    The op: `contents string [...] -> int32 [..., 2]`, each JPEG's height and width read by libjpeg's
    header parser, 0, 0 where it rejects the header (where `tf.image.extract_jpeg_shape` raises).
    """
    library = load()
    return None if library is None else library.two_stream_jpeg_sizes


def load():
    """Loads the kernels into this process (compiling them the first time): the loaded library, or None.

    Processes that only run graphs built elsewhere (tf.data service servers) call it so that those
    graphs' ops are known."""
    if not enabled():
        return None
    with _lock:
        if "library" not in _loaded:
            _loaded["library"] = _load()
        return _loaded["library"]


def _load():
    import tensorflow as tf

    try:
        path = library_path()
        if not path.exists():
            logger.info("compiling the training-view kernels into %s (once per TensorFlow version and CPU)", path)
            build(path)
        return tf.load_op_library(str(path))
    except Exception as error:  # any failure leaves the TensorFlow-ops path, which gives the same tensors
        logger.warning("the compiled training-view kernels are not available, using TensorFlow ops (%s)", error)
        return None


def forget():
    """Forgets the loaded kernels, so that the next `flow_stacks_op()` looks again (tests)."""
    with _lock:
        _loaded.clear()

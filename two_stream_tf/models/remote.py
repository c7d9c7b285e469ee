"""Models given by URL: a `.keras` file on a web server (or a `file://` URL), downloaded once and cached.

    path = fetch_model("https://example.org/models/ucf101_spatial.keras")   # ~/.keras/two_stream_models/…
    model = load_model(path)

Downloads go through `keras.utils.get_file`, so they land in Keras' cache folder (`$KERAS_HOME`, by
default `~/.keras`) under `two_stream_models/`, and a second call with the same URL reads the cached
file without a connection. The cached name starts with a digest of the URL, so two URLs that end in the
same file name (e.g. two run folders' `best.keras`) do not overwrite each other.
"""
import hashlib
import os
import urllib.parse

from two_stream_tf.errors import UserError

URL_SCHEMES = ("http", "https", "ftp", "file")
CACHE_SUBDIR = "two_stream_models"
# Where downloads are cached when the caller gives no cache_dir; None: Keras' cache folder.
DEFAULT_CACHE_DIR = None


def is_url(location):
    """True for a string naming a model by URL (http, https, ftp or file), not a local path."""
    if not isinstance(location, str):
        return False
    scheme = urllib.parse.urlsplit(location).scheme.lower()
    return scheme in URL_SCHEMES


def cached_name(url):
    """The file name a URL's model is cached under: `<12 hex digits of its SHA-256>_<file name>`."""
    name = os.path.basename(urllib.parse.urlsplit(url).path) or "model.keras"
    return f"{hashlib.sha256(url.encode('utf-8')).hexdigest()[:12]}_{name}"


def fetch_model(url, cache_dir=None):
    """Downloads the `.keras` file at `url` (once; later calls read the cache) and returns its local path.

    Args:
      url: an http(s), ftp or file URL of a `.keras` file.
      cache_dir: the cache folder (default: `DEFAULT_CACHE_DIR`, else Keras' own, `$KERAS_HOME` or
        `~/.keras`); the file goes to `cache_dir/two_stream_models/`.

    Raises:
      UserError: the URL does not name a `.keras` file, or the download fails (the message has the URL).
    """
    import keras

    path = urllib.parse.urlsplit(url).path
    if not path.endswith(".keras"):
        raise UserError(f"model URL {url}: must name a .keras file")
    cache_dir = cache_dir or DEFAULT_CACHE_DIR
    if cache_dir is not None:
        # Keras falls back to a folder in /tmp for a cache folder that does not exist yet.
        os.makedirs(os.path.join(os.path.expanduser(cache_dir), CACHE_SUBDIR), exist_ok=True)
    try:
        return keras.utils.get_file(fname=cached_name(url), origin=url, cache_dir=cache_dir,
                                    cache_subdir=CACHE_SUBDIR)
    except Exception as error:  # Keras wraps URL, HTTP and file errors in plain Exceptions
        reason = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
        reason = reason.replace(f"URL fetch failure on {url}: ", "")
        raise UserError(f"model URL {url}: download failed ({reason})") from None

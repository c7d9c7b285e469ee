"""Finding the videos to prepare: a folder (class folders or flat) or a file list, and their video ids."""
import collections
import os
import pathlib

from two_stream_tf.errors import UserError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")


def video_id(path):
    """The id of a video, its file name without extension (what TSN names its frame folder)."""
    return pathlib.PurePath(path).stem


def find_videos(source, video_root=None):
    """Lists the videos under a folder or in a file list.

    Args:
      source: a folder, searched recursively for files with a `VIDEO_EXTENSIONS` suffix (UCF-101 and HMDB-51
        class folders, or a flat folder), skipping hidden files and folders (macOS leaves `._v_X.avi`
        copies that are not videos, and this tool's own `.prepare`); or a text file with one video path per line (the first
        whitespace-separated field, so UCF-101 `trainlist01.txt` lines `Class/v_X.avi 1` work; blank lines
        and lines starting with `#` are skipped).
      video_root: for a file list, the folder its relative paths start from; default: the list's folder.

    Returns:
      Absolute paths as strings, sorted for folders, in list order for lists.

    Raises:
      UserError: the source does not exist, or a listed video is missing (naming list file and line).
    """
    source = pathlib.Path(source)
    if source.is_dir():
        return sorted(str(p.resolve()) for p in source.rglob("*")
                      if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
                      and not any(part.startswith(".") for part in p.relative_to(source).parts))
    if not source.is_file():
        raise UserError(f"videos: {source} is neither a folder nor a file list")
    root = pathlib.Path(video_root) if video_root is not None else source.parent
    if not root.is_dir():
        raise UserError(f"video root {root} is not a folder")
    paths = []
    with open(source, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            path = (root / fields[0]).resolve()
            if not path.is_file():
                raise UserError(f"{source}:{number}: video {fields[0]!r} not found under {root}")
            paths.append(str(path))
    return paths


def check_unique_ids(video_paths):
    """Raises `UserError` if two videos share an id (their frame folders would collide)."""
    by_id = collections.defaultdict(list)
    for path in video_paths:
        by_id[video_id(path)].append(os.fspath(path))
    clashes = {vid: paths for vid, paths in by_id.items() if len(paths) > 1}
    if clashes:
        vid, paths = sorted(clashes.items())[0]
        raise UserError(f"{len(clashes)} video id(s) are not unique, e.g. {vid!r} is the name of "
                        f"{' and '.join(paths)}; output folders are named by file stem")

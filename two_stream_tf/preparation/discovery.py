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
    """Lists the videos of a single video file, a folder or a file list.

    Args:
      source: a video file (a name ending in one of `VIDEO_EXTENSIONS`); a folder, searched recursively for
        such files (UCF-101 and HMDB-51 class folders, or a flat folder), skipping hidden files and folders
        (macOS leaves `._v_X.avi` copies that are not videos, and this tool's own `.prepare`); or a UTF-8
        text file with one video path per line (the first whitespace-separated field, so UCF-101
        `trainlist01.txt` lines `Class/v_X.avi 1` work; blank lines and lines starting with `#` are skipped).
      video_root: for a file list, the folder its relative paths start from and that every entry must lie
        in, once `..` and absolute paths are resolved (by name: symbolic links inside the root may point
        anywhere). Default: relative paths start from the list's folder and any path is accepted.

    Returns:
      Absolute paths as strings: the one video, sorted for folders, in list order for lists.

    Raises:
      UserError: the source does not exist or is neither a video nor a text list, or a listed video is
        missing or outside the video root (naming list file and line).
    """
    source = pathlib.Path(source)
    if source.is_dir():
        return sorted(str(p.resolve()) for p in source.rglob("*")
                      if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
                      and not any(part.startswith(".") for part in p.relative_to(source).parts))
    if not source.is_file():
        raise UserError(f"videos: {source} is neither a video, a folder nor a file list")
    if source.suffix.lower() in VIDEO_EXTENSIONS:
        return [str(source.resolve())]
    root = pathlib.Path(video_root) if video_root is not None else source.parent
    if not root.is_dir():
        raise UserError(f"video root {root} is not a folder")
    root_path = os.path.abspath(root)
    paths = []
    for number, line in enumerate(_list_lines(source), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        entry = os.path.normpath(os.path.join(root_path, fields[0]))
        if video_root is not None and os.path.commonpath([root_path, entry]) != root_path:
            raise UserError(f"{source}:{number}: video {fields[0]!r} is outside the video root {root}")
        path = pathlib.Path(entry).resolve()
        if not path.is_file():
            raise UserError(f"{source}:{number}: video {fields[0]!r} not found under {root}")
        paths.append(str(path))
    return paths


def _list_lines(source):
    """The lines of a file list; `UserError` if it is not text (a video with an unknown extension, say)."""
    with open(source, "rb") as file:
        head = file.read(1 << 16)
        # A binary file (a video under an unknown extension) shows NUL bytes early: do not read it all.
        data = head + file.read() if b"\0" not in head else head
    for number, line in enumerate(data.split(b"\n"), 1):
        try:
            if b"\0" in line:
                raise UnicodeDecodeError("utf-8", line, 0, 1, "NUL byte")
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"videos: {source} is not a video ({', '.join(VIDEO_EXTENSIONS)}) nor a text file "
                            f"list (line {number} is not UTF-8 text)") from None
    return data.decode("utf-8").splitlines()


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

"""Dataset index: where each video of a split has its frames, how many RGB frames and flow pairs, its label.

`build_index` takes split entries and a frames root in any layout of `two_stream_tf.data.layouts` (detected
with layout="auto", or named) whose video folders sit flat (`<root>/<video>`) or per class
(`<root>/<Class>/<video>`, mmaction2's rawframes); which one is found by looking. Folder and class names
match without regard to case (UCF-101's `HandstandPushups` / `v_HandStandPushups_…`).

Validation collects every broken video — missing folder, no frames, gaps in the numbering, x/y flow counts
that differ, a path or symlink leading outside the root — and raises one `UserError` listing each with its
reason. RGB frames and flow pairs are counted separately (a video has N frames and N-1, sometimes N or
fewer, flow pairs).

Counting is one `os.scandir` per folder, numbers parsed from the names, no stat per file. Results are cached
per folder in a JSON file, `.two_stream_tf_index.json` in the frames root, or in the user cache folder when
the root is read-only; a folder is scanned again only when its modification time changed (adding, removing
or renaming files changes it), so re-opening a large dataset costs one stat per video folder.

A frames root may be on any `tf.io.gfile` path (`gs://bucket/frames`, `ram://`): there folders are listed
through `tf.io.gfile`, nothing is cached (object stores give folders no modification time) and there are
no symlinks to check.
"""
import collections
import dataclasses
import hashlib
import json
import os
import re
import stat
import tempfile
import time

from tqdm import tqdm

from two_stream_tf import storage
from two_stream_tf.data import layouts as layouts_lib
from two_stream_tf.data.layouts import LAYOUTS, Layout
from two_stream_tf.data.splits import load_split
from two_stream_tf.errors import UserError

CACHE_FILE_NAME = ".two_stream_tf_index.json"
_CACHE_VERSION = 1
# Folders modified this recently are not cached: a file added within the same clock tick as the scan
# would not change the folder's modification time.
_RACY_SECONDS = 2.0
_MAX_LISTED_PROBLEMS = 100


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One indexed video.

    Attributes:
      video: the video's folder path relative to the dataset root (what a `Layout` calls `{video}`), e.g.
        "v_ApplyEyeMakeup_g01_c01" or "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01".
      label: 0-based class id.
      num_frames: RGB frames on disk.
      num_flow: flow pairs on disk (equal to num_frames in dense_flow's numbering, num_frames - 1 where every
        frame was kept as RGB; see docs/conventions.md).
    """

    video: str
    label: int
    num_frames: int
    num_flow: int


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetIndex:
    """The validated videos of a split in a frames folder.

    Attributes:
      root: absolute dataset root.
      layout: the frame `Layout`, with `start` resolved (0 or 1).
      classes: class names, index = 0-based label.
      entries: one `VideoEntry` per video, in split-file order.
    """

    root: str
    layout: Layout
    classes: tuple
    entries: tuple

    def __len__(self):
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __getitem__(self, i):
        return self.entries[i]

    def rgb_path(self, entry, index):
        """Absolute path of RGB frame `index` (0-based) of `entry`."""
        if not 0 <= index < entry.num_frames:
            raise IndexError(f"frame {index} of {entry.video} is outside 0..{entry.num_frames - 1}")
        return os.path.join(self.root, self.layout.rgb_file(entry.video, index))

    def flow_paths(self, entry, index):
        """Absolute paths (x, y) of flow pair `index` (0-based) of `entry`."""
        if not 0 <= index < entry.num_flow:
            raise IndexError(f"flow pair {index} of {entry.video} is outside 0..{entry.num_flow - 1}")
        x_file, y_file = self.layout.flow_files(entry.video, index)
        return os.path.join(self.root, x_file), os.path.join(self.root, y_file)

    def summary(self):
        """Counts for reports: layout, videos, classes, and min / mean / max RGB frames and flow pairs."""
        def stats(values):
            values = list(values)
            if not values:
                return {"min": 0, "mean": 0.0, "max": 0, "total": 0}
            return {"min": min(values), "mean": sum(values) / len(values), "max": max(values), "total": sum(values)}

        per_class = collections.Counter(e.label for e in self.entries)
        return {
            "root": self.root,
            "layout": self.layout.name,
            "start": self.layout.start,
            "videos": len(self.entries),
            "classes": len(self.classes),
            "classes_with_videos": len(per_class),
            "videos_per_class": stats(per_class.get(label, 0) for label in range(len(self.classes))),
            "frames": stats(e.num_frames for e in self.entries),
            "flow": stats(e.num_flow for e in self.entries),
        }


def open_split_index(frames_root, split_dir, split=1, subset="train", class_subset=None, layout="auto", cache=True):
    """Reads a split's files and indexes its videos in a frames folder.

    Args:
      frames_root: the frames folder (dataset root).
      split_dir: folder of the split files (UCF-101 or HMDB-51 style, see `two_stream_tf.data.splits`).
      split: split number.
      subset: "train", "test", or "all" (both).
      class_subset: None, a classInd-style file or a sequence of class names to keep.
      layout: "auto", a name in `LAYOUTS`, or a `Layout`.
      cache: True (cache file in the root, or the user cache folder if the root is read-only), False, or a
        folder to keep the cache file in.

    Returns:
      A `DatasetIndex`.
    """
    loaded = load_split(split_dir, split, class_subset)
    if subset == "all":
        entries = loaded.train + loaded.test
    else:
        entries = loaded.subset(subset)
    if not entries:
        raise UserError(f"the {subset} subset of split {split} in {split_dir} has no videos")
    return build_index(frames_root, entries, loaded.classes, layout=layout, cache=cache)


def build_index(frames_root, entries, classes, layout="auto", cache=True):
    """Indexes and validates the videos of split entries in a frames folder.

    Args:
      frames_root: the frames folder (dataset root).
      entries: `SplitEntry`s (video id, 0-based label, path as in the split file).
      classes: class names, index = label.
      layout: "auto", a name in `LAYOUTS`, or a `Layout`.
      cache: True, False, or a folder for the cache file (see `open_split_index`).

    Returns:
      A `DatasetIndex` whose entries follow `entries`' order.

    Raises:
      UserError: the root is missing, or videos are broken (all of them listed, each with its reason).
    """
    root = storage.absolute(storage.check(os.fspath(frames_root), "frames folder"))
    if not storage.isdir(root):
        raise UserError(f"frames folder not found: {root}")
    entries = list(entries)
    classes = tuple(classes)
    requested = layouts_lib.get_layout(layout)
    template = requested if requested is not None else _auto_template(root)
    spec = _ScanSpec.for_layout(template)
    tree = _Tree(root)
    store = _ScanCache(root, False if storage.is_remote(root) else cache)

    arrangement = _find_arrangement(tree, spec, entries, classes)
    videos = []
    progress = tqdm(entries, desc="indexing videos", unit="video", disable=None, leave=False)
    for entry in progress:
        videos.append(_scan_video(tree, store, spec, entry, classes, arrangement))
    progress.close()
    store.save()

    resolved, decided = _resolve_layout(template, requested is None, videos)
    problems = []
    index_entries = []
    has_flow = any(v.flow_counts(resolved) != (0, 0) for v in videos if v.problem is None)
    for video in videos:
        reasons = [video.problem] if video.problem else _check_video(tree, spec, resolved, video, has_flow, decided)
        if reasons:
            problems.append((video.entry.video, reasons))
            continue
        num_x, num_y = video.flow_counts(resolved)
        index_entries.append(VideoEntry(video=video.rel_video, label=video.entry.label,
                                        num_frames=video.count(resolved.rgb_dir, resolved.rgb_prefix)[0],
                                        num_flow=num_x))
    if problems:
        raise UserError(_problem_report(root, resolved, len(videos), problems))
    return DatasetIndex(root=root, layout=resolved, classes=classes, entries=tuple(index_entries))


# --- Scanning -----------------------------------------------------------------------------------------------

def _auto_template(root):
    """The layout family to scan for: twostreamfusion when `jpegs_256/` exists, else the one-folder ones."""
    if storage.isdir(storage.join(root, layouts_lib.TWOSTREAMFUSION_MARKER)):
        return LAYOUTS["twostreamfusion"]
    return LAYOUTS["tsn"]


@dataclasses.dataclass(frozen=True)
class _ScanSpec:
    """Which folders of a video to scan and which file names count there.

    Attributes:
      folders: ((folder template, (prefix, ...)), ...), the RGB folder first.
      patterns: {folder template: compiled regex} whose groups are (prefix, number).
    """

    folders: tuple
    patterns: dict

    @staticmethod
    def for_layout(layout):
        folders = {}
        for template, prefix in ((layout.rgb_dir, layout.rgb_prefix), (layout.flow_x_dir, layout.flow_x_prefix),
                                 (layout.flow_y_dir, layout.flow_y_prefix)):
            folders.setdefault(template, set()).add(prefix)
        if set(folders) == {"{video}"} and layout.digits == 5 and layout.extension == ".jpg":
            # The one-folder layouts are scanned for all their namings, so detection and error messages can
            # tell flow_x_ from x_ files, and one cache serves them all.
            for name in ("tsn", "mmaction2"):
                other = LAYOUTS[name]
                folders["{video}"] |= {other.rgb_prefix, other.flow_x_prefix, other.flow_y_prefix}
        folders = tuple((t, tuple(sorted(p, key=len, reverse=True))) for t, p in folders.items())
        number = f"([0-9]{{{layout.digits}}}){re.escape(layout.extension)}"
        patterns = {t: re.compile(f"({'|'.join(map(re.escape, p))}){number}") for t, p in folders}
        return _ScanSpec(folders, patterns)

    @property
    def rgb_template(self):
        return self.folders[0][0]

    def pattern(self, template):
        return self.patterns[template]

    def key(self, template):
        return self.patterns[template].pattern


class _Tree:
    """Folder listings under the root, each read once, for lookups that need no stat."""

    def __init__(self, root):
        self.root = root
        self.remote = storage.is_remote(root)
        self.real_root = root if self.remote else os.path.realpath(root)
        self._listings = {}

    def listing(self, rel):
        """{name: (is_dir, is_symlink)} of folder `rel` ("" = root), plus a lower-case map; None if missing.

        On remote file systems is_dir is None until `find` asks (one request per name looked up rather
        than one per name listed) and nothing is a symlink."""
        if rel not in self._listings:
            try:
                names = {entry.name: (entry.is_dir(), entry.is_symlink())
                         for entry in _entries(storage.join(self.root, rel) if rel else self.root)
                         if not entry.name.startswith(".")}
            except (FileNotFoundError, NotADirectoryError):
                self._listings[rel] = None
            else:
                lower = {}
                for name in sorted(names):
                    lower.setdefault(name.lower(), name)
                self._listings[rel] = (names, lower)
        return self._listings[rel]

    def find(self, rel_parent, name, any_case=True):
        """The on-disk name of sub-folder `name` of `rel_parent` (any case), or None."""
        listing = self.listing(rel_parent)
        if listing is None:
            return None
        names, lower = listing
        actual = name if name in names else (lower.get(name.lower()) if any_case else None)
        if actual is None:
            return None
        if names[actual][0] is None:
            path = storage.join(self.root, rel_parent, actual) if rel_parent else storage.join(self.root, actual)
            names[actual] = (storage.isdir(path), False)
        return actual if names[actual][0] else None

    def is_symlink(self, rel_parent, name):
        listing = self.listing(rel_parent)
        return bool(listing and listing[0].get(name, (False, False))[1])

    def inside(self, path):
        if self.remote:
            return True  # no symlinks on object stores
        real = os.path.realpath(path)
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def resolve(self, rel_path, any_case=True):
        """Walks `rel_path` ("a/b/c") through the listings.

        Returns:
          (on-disk relative path, None), or (None, "missing") / (None, "outside") when a component is
          missing or a symlinked component leads outside the root.
        """
        parent = ""
        for part in rel_path.split("/"):
            actual = self.find(parent, part, any_case)
            if actual is None:
                return None, "missing"
            current = f"{parent}/{actual}" if parent else actual
            if self.is_symlink(parent, actual) and not self.inside(os.path.join(self.root, current)):
                return None, "outside"
            parent = current
        return parent, None


@dataclasses.dataclass
class _FolderScan:
    """What one folder holds: per prefix (count, lowest number, highest number); files leading outside."""

    counts: dict
    outside: list


class _RemoteEntry:
    """An `os.DirEntry` look-alike for a `tf.io.gfile` listing (whether it is a folder is asked lazily)."""

    def __init__(self, folder, name):
        self.name = name.rstrip("/")
        self.path = storage.join(folder, self.name)
        self._is_dir = True if name.endswith("/") else None

    def is_dir(self):
        return self._is_dir

    def is_symlink(self):
        return False


def _entries(path):
    """The entries of a folder: `os.scandir` locally, a `tf.io.gfile` listing on remote paths."""
    if not storage.is_remote(path):
        with os.scandir(path) as it:
            return list(it)
    if not storage.isdir(path):
        raise FileNotFoundError(path)
    import tensorflow as tf
    return [_RemoteEntry(path, name) for name in tf.io.gfile.listdir(path)]


def _scan_folder(tree, path, pattern):
    counts, outside = {}, []
    for e in _entries(path):
        match = pattern.fullmatch(e.name)
        if match is None:
            continue
        if e.is_symlink() and not tree.inside(e.path):
            outside.append(e.name)
            continue
        number = int(match.group(2))
        prefix = match.group(1)
        found = counts.get(prefix)
        counts[prefix] = [1, number, number] if found is None else [found[0] + 1, min(found[1], number),
                                                                      max(found[2], number)]
    return _FolderScan(counts={p: tuple(v) for p, v in counts.items()}, outside=outside)


def _folder_numbers(path, pattern, prefix):
    """The numbers of one prefix's files in a folder (read again only to describe a gap)."""
    names = (e.name for e in _entries(path))
    return {int(m.group(2)) for m in map(pattern.fullmatch, names) if m and m.group(1) == prefix}


class _ScanCache:
    """Folder scans by folder path and modification time, in a JSON file."""

    def __init__(self, root, cache):
        self.scans = {}
        self.updates = {}  # what this run scanned: {pattern key: {folder: record}}
        self.paths = _cache_paths(root, cache)
        self.root = os.path.realpath(root)
        self._loaded = None  # (path, mtime_ns, size) of the file read, to skip re-reading it on save
        for path in self.paths:
            data = self._read(path)
            if data is not None:
                self.scans = data
                break

    def _read(self, path):
        try:
            with open(path, encoding="utf-8") as f:
                info = os.fstat(f.fileno())
                data = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION or data.get("root") != self.root:
            return None
        self._loaded = (path, info.st_mtime_ns, info.st_size)
        return data.get("scans", {})

    def get(self, key, rel, mtime_ns):
        found = self.scans.get(key, {}).get(rel)
        if found is None or found[0] != mtime_ns:
            return None
        return _FolderScan(counts={p: tuple(v) for p, v in found[1].items()}, outside=list(found[2]))

    def put(self, key, rel, mtime_ns, scan):
        if time.time() - mtime_ns / 1e9 < _RACY_SECONDS:
            return
        record = [mtime_ns, scan.counts, scan.outside]
        self.scans.setdefault(key, {})[rel] = record
        self.updates.setdefault(key, {})[rel] = record

    def save(self):
        """Writes the cache if anything was scanned, to the first place that takes it."""
        if not self.updates:
            return
        for path in self.paths:
            try:
                merged = self.scans
                if not self._unchanged_since_read(path):
                    # Another process may have cached other folders meanwhile: keep theirs, add ours.
                    merged = self._read(path) or {}
                    for key, folders in self.updates.items():
                        merged.setdefault(key, {}).update(folders)
                _write_json_atomically(path, {"version": _CACHE_VERSION, "root": self.root, "scans": merged})
                self.updates = {}
                return
            except OSError:
                continue  # read-only: try the next place

    def _unchanged_since_read(self, path):
        try:
            info = os.stat(path)
        except OSError:
            return self._loaded is None
        return self._loaded == (path, info.st_mtime_ns, info.st_size)


def _cache_paths(root, cache):
    """Where the cache file may be, in order of preference."""
    if cache is False or cache is None:
        return []
    real_root = os.path.realpath(root)
    file_name = f"index-{hashlib.sha1(real_root.encode()).hexdigest()[:16]}.json"
    if cache is not True:
        return [os.path.join(os.fspath(cache), file_name)]
    user_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    fallback = os.path.join(user_cache, "two_stream_tf", file_name)
    if _writable(root):
        return [os.path.join(root, CACHE_FILE_NAME), fallback]
    return [fallback]


def _writable(folder):
    # Checks the mode bits as well as access(): for root, access() says yes even to an r-x folder that is
    # meant to be read-only.
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(folder, os.W_OK)


def _write_json_atomically(path, data):
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".index-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, separators=(",", ":")))  # dumps uses the C encoder, dump does not
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is no secret
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


# --- Videos ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Arrangement:
    per_class: bool


def _leaves_root(entry):
    """Whether a split entry's path is absolute or climbs out with `..` (it is refused, never looked up)."""
    path = entry.path.replace("\\", "/")
    video = entry.video
    return (path.startswith("/") or path[1:2] == ":" or ".." in path.split("/")
            or video in ("", ".", "..") or "/" in video or "\\" in video)


def _class_folder(entry, classes):
    parts = [p for p in re.split(r"[\\/]", entry.path) if p]
    return parts[-2] if len(parts) >= 2 else classes[entry.label]


def _base(spec):
    """The folder holding the video folders, relative to the root ("" or "jpegs_256")."""
    return spec.rgb_template.replace("{video}", "").strip("/")


def _join(*parts):
    return "/".join(p for p in parts if p)


def _find_arrangement(tree, spec, entries, classes):
    """Flat (`<base>/<video>`) or per class (`<base>/<Class>/<video>`): whichever finds more videos."""
    base = _base(spec)
    safe = [e for e in entries if not _leaves_root(e)]
    flat = sum(tree.find(base, e.video) is not None for e in safe)
    if flat == len(safe):
        return _Arrangement(per_class=False)
    per_class = 0
    for e in safe:
        folder = tree.find(base, _class_folder(e, classes))
        per_class += folder is not None and tree.find(_join(base, folder), e.video) is not None
    return _Arrangement(per_class=per_class > flat)


@dataclasses.dataclass
class _ScannedVideo:
    entry: object
    rel_video: str = None
    problem: str = None
    scans: dict = dataclasses.field(default_factory=dict)  # folder template -> _FolderScan or None (missing)

    def count(self, template, prefix):
        scan = self.scans.get(template)
        if scan is None:
            return (0, None, None)
        return scan.counts.get(prefix, (0, None, None))

    def flow_counts(self, layout):
        return (self.count(layout.flow_x_dir, layout.flow_x_prefix)[0],
                self.count(layout.flow_y_dir, layout.flow_y_prefix)[0])


def _scan_video(tree, store, spec, entry, classes, arrangement):
    video = _ScannedVideo(entry)
    if _leaves_root(entry):
        video.problem = f"path leaves the dataset root: {entry.path!r}"
        return video
    base = _base(spec)
    wanted = _join(_class_folder(entry, classes) if arrangement.per_class else "", entry.video)
    rel_rgb, failure = tree.resolve(_join(base, wanted))
    if failure == "outside":
        video.problem = f"folder {_join(base, wanted)} resolves outside the dataset root (symlink)"
        return video
    if rel_rgb is None:
        video.problem = f"missing folder {_join(base, wanted)}"
        return video
    video.rel_video = rel_rgb[len(base) + 1:] if base else rel_rgb
    for template, _ in spec.folders:
        if template == spec.rgb_template:
            rel_folder, failure = rel_rgb, None
        else:
            rel_folder, failure = tree.resolve(template.format(video=video.rel_video), any_case=False)
        if failure == "outside":
            folder = template.format(video=video.rel_video)
            video.problem = f"folder {folder} resolves outside the dataset root (symlink)"
            return video
        if rel_folder is None:
            video.scans[template] = None
            continue
        path = storage.join(tree.root, rel_folder)
        key = spec.key(template)
        if tree.remote:  # no folder times to validate a cache with
            scan = _scan_folder(tree, path, spec.pattern(template))
        else:
            mtime_ns = os.stat(path).st_mtime_ns
            scan = store.get(key, rel_folder, mtime_ns)
            if scan is None:
                scan = _scan_folder(tree, path, spec.pattern(template))
                store.put(key, rel_folder, mtime_ns, scan)
        video.scans[template] = scan
    return video


def _resolve_layout(template, auto, videos):
    """The layout with its start: as named, or detected from all videos (flow naming and start by majority).

    Returns:
      (layout, detected) where `detected` says the layout came from the videos (for error messages).
    """
    if not auto:
        return template, False
    good = [v for v in videos if v.problem is None]
    if template.name == "twostreamfusion":
        flow_x_prefix = None
    else:
        namings = collections.Counter()
        for naming in ("tsn", "mmaction2"):
            layout = LAYOUTS[naming]
            namings[layout.flow_x_prefix] = sum(v.count("{video}", layout.flow_x_prefix)[0] > 0 for v in good)
        flow_x_prefix = max(namings, key=lambda p: (namings[p], p == LAYOUTS["tsn"].flow_x_prefix))
    starts = collections.Counter()
    for v in good:
        lowest = v.count(template.rgb_dir, template.rgb_prefix)[1]
        if lowest in (0, 1):  # is there an img_00000 (0-based), else an img_00001 (1-based)?
            starts[lowest] += 1
    start = max(starts, key=lambda s: (starts[s], s == 1)) if starts else template.start
    if flow_x_prefix is None:
        return template.with_start(start), True
    return layouts_lib.single_folder_layout(flow_x_prefix, start), True


def _check_video(tree, spec, layout, video, has_flow, detected):
    """The reasons a scanned video is broken under `layout` (empty when it is fine)."""
    reasons = []
    rel = video.rel_video
    if video.scans.get(layout.rgb_dir) is None:
        return [f"missing folder {layout.rgb_dir.format(video=rel)}"]
    scan = video.scans[layout.rgb_dir]
    if scan.outside:
        reasons.append(f"{len(scan.outside)} file(s) resolve outside the dataset root (symlinks), "
                       f"e.g. {scan.outside[0]}")
    reasons += _numbering_problems(tree, spec, layout, video, layout.rgb_dir, layout.rgb_prefix, "RGB frames", detected)
    if not has_flow:
        return reasons
    for template in {layout.flow_x_dir, layout.flow_y_dir} - {layout.rgb_dir}:
        if video.scans.get(template) is None:
            reasons.append(f"missing flow folder {template.format(video=rel)}")
        elif video.scans[template].outside:
            reasons.append("flow files resolve outside the dataset root (symlinks), "
                           f"e.g. {video.scans[template].outside[0]}")
    num_x, num_y = video.flow_counts(layout)
    if num_x == 0 and num_y == 0:
        other = _other_flow_naming(video, layout)
        reasons.append(f"no flow images ({layout.flow_x_prefix}{'N' * layout.digits}{layout.extension})"
                       + (f"; found {other} files instead" if other else ""))
        return reasons
    if num_x != num_y:
        reasons.append(f"flow x/y mismatch: {num_x} {layout.flow_x_prefix} but {num_y} {layout.flow_y_prefix} images")
    for template, prefix, what in ((layout.flow_x_dir, layout.flow_x_prefix, "flow x"),
                                   (layout.flow_y_dir, layout.flow_y_prefix, "flow y")):
        reasons += _numbering_problems(tree, spec, layout, video, template, prefix, what, detected)
    return reasons


def _other_flow_naming(video, layout):
    for name in ("tsn", "mmaction2"):
        other = LAYOUTS[name]
        if other.flow_x_prefix != layout.flow_x_prefix and video.count("{video}", other.flow_x_prefix)[0]:
            return f"{other.flow_x_prefix}/{other.flow_y_prefix}"
    return None


def _numbering_problems(tree, spec, layout, video, template, prefix, what, detected):
    count, lowest, highest = video.count(template, prefix)
    name = lambda number: layouts_lib.numbered_file_name(layout, prefix, number)  # noqa: E731
    if count == 0:
        return [f"no {what} ({prefix}{'N' * layout.digits}{layout.extension})"] if what == "RGB frames" else []
    if lowest < layout.start:
        origin = "the other videos are" if detected else f"layout {layout.name} is"
        return [f"{what} numbered from {lowest} ({name(lowest)}) but {origin} numbered from {layout.start}"]
    if lowest == layout.start and highest - lowest + 1 == count:
        return []
    folder = storage.join(tree.root, template.format(video=video.rel_video))
    numbers = _folder_numbers(folder, spec.pattern(template), prefix)
    missing = [n for n in range(layout.start, highest + 1) if n not in numbers]
    shown = ", ".join(name(n) for n in missing[:3])
    more = f" ({len(missing)} missing in all)" if len(missing) > 3 else ""
    return [f"gap in {what}: missing {shown}{more}"]


def _problem_report(root, layout, total, problems):
    lines = [f"{len(problems)} of {total} videos in {root} are broken (layout {layout.name}, numbered from "
             f"{layout.start}):"]
    for video, reasons in problems[:_MAX_LISTED_PROBLEMS]:
        lines.append(f"  {video}: {'; '.join(reasons)}")
    if len(problems) > _MAX_LISTED_PROBLEMS:
        lines.append(f"  … and {len(problems) - _MAX_LISTED_PROBLEMS} more broken videos")
    return "\n".join(lines)

"""Official train/test split files of UCF-101 and HMDB-51, and class subsets of them.

UCF-101 (`split_dir` holds these):

  classInd.txt       `1 ApplyEyeMakeup` … (1-based id, class name)
  trainlist0N.txt    `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1` (path, 1-based label)
  testlist0N.txt     `ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi` (path only)

HMDB-51: one `<class>_test_split<N>.txt` per class and split, lines `<video>.avi <tag> ` with tag 1 = train,
2 = test, 0 = unused; classes are numbered in the order of TSN's `class_list.txt` when the folder has one,
else in sorted order of the split files' names (which is the same order: `kick_ball` before `kick`).

Both CRLF and LF files, trailing spaces and blank lines are accepted. Class names are matched without regard
to case: the real UCF-101 lists say `HandstandPushups/v_HandStandPushups_g08_c01.avi`, and both spellings
resolve to the class `HandstandPushups` of classInd.txt.

A class subset (people often train on 10 or 15 classes) is a classInd-style file (`id name` lines, or bare
names; the ids are ignored) or a sequence of names: only videos of those classes are kept, relabelled
0..k-1 in the subset's order.
"""
import dataclasses
import glob
import os
import re

from two_stream_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class SplitEntry:
    """One video of a split.

    Attributes:
      video: video id without extension, e.g. "v_ApplyEyeMakeup_g01_c01".
      label: 0-based class id.
      path: as written in the split file, e.g. "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi".
      where: "file:line" of the entry, for messages (None for entries not read from a file).
    """

    video: str
    label: int
    path: str
    where: str = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Split:
    """A train/test split.

    Attributes:
      classes: class names, index = 0-based label.
      train, test: the videos of each subset, in file order.
    """

    classes: tuple
    train: tuple
    test: tuple

    def subset(self, name):
        """The entries of "train" or "test"."""
        if name not in ("train", "test"):
            raise UserError(f"subset must be 'train' or 'test', got {name!r}")
        return self.train if name == "train" else self.test


def _lines(path):
    """Yields (1-based line number, text without surrounding whitespace) of the non-blank lines."""
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            content = f.read()
    except FileNotFoundError:
        raise UserError(f"split file not found: {path}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not a text file ({error.reason} at byte {error.start})") from None
    for number, line in enumerate(content.splitlines(), start=1):
        text = line.strip()
        if text:
            yield number, text


def _error(path, number, problem, text):
    return UserError(f"{path}:{number}: {problem}: {text!r}")


class _ClassTable:
    """Class names with case-insensitive lookup, remembering where each was defined."""

    def __init__(self):
        self.names = []
        self._by_key = {}

    def add(self, name, where):
        key = name.lower()
        if key in self._by_key:
            first = self._by_key[key][1]
            raise UserError(f"{where}: class {name!r} is already defined at {first}")
        self._by_key[key] = (len(self.names), where)
        self.names.append(name)

    def find(self, name):
        """0-based id of `name` (any case), or None."""
        found = self._by_key.get(name.lower())
        return None if found is None else found[0]


def read_class_index(path):
    """Reads a UCF-101 `classInd.txt`: lines `id name`, ids 1..K, each once.

    Returns:
      Class names, index = id - 1.
    """
    by_id = {}
    table = _ClassTable()
    for number, text in _lines(path):
        fields = text.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise _error(path, number, "expected '<id> <class name>'", text)
        class_id = int(fields[0])
        if class_id in by_id:
            raise _error(path, number, f"class id {class_id} is already used at line {by_id[class_id][0]}", text)
        if table.find(fields[1]) is not None:
            first = [n for n, name in by_id.values() if name.lower() == fields[1].lower()][0]
            raise _error(path, number, f"class already defined at line {first} (names are compared "
                         "without regard to case)", text)
        table.add(fields[1], f"{path}:{number}")
        by_id[class_id] = (number, fields[1])
    if not by_id:
        raise UserError(f"{path}: no classes listed")
    expected = set(range(1, len(by_id) + 1))
    if set(by_id) != expected:
        missing = sorted(expected - set(by_id))
        raise UserError(f"{path}: class ids must be 1..{len(by_id)}; missing {missing[:10]}")
    return tuple(by_id[i][1] for i in sorted(by_id))


def read_class_subset(class_subset):
    """Reads a class subset: a classInd-style file (`id name` or `name` lines) or a sequence of names.

    Returns:
      A list of (name, where) with `where` a "file:line" (or "class subset[i]") for messages.
    """
    if isinstance(class_subset, (str, os.PathLike)):
        path = os.fspath(class_subset)
        subset = []
        for number, text in _lines(path):
            fields = text.split()
            if len(fields) == 2 and fields[0].isdigit():
                name = fields[1]
            elif len(fields) == 1 and not fields[0].isdigit():
                name = fields[0]
            else:
                raise _error(path, number, "expected '<id> <class name>' or '<class name>'", text)
            subset.append((name, f"{path}:{number}"))
        if not subset:
            raise UserError(f"{path}: the class subset lists no classes")
        return subset
    subset = [(str(name), f"class subset[{i}]") for i, name in enumerate(class_subset)]
    if not subset:
        raise UserError("the class subset is empty")
    return subset


def _apply_subset(classes, entries_by_subset, class_subset):
    """Keeps the subset's classes and relabels them 0..k-1 in the subset's order."""
    if class_subset is None:
        return Split(tuple(classes), *(tuple(entries) for entries in entries_by_subset))
    table = _ClassTable()
    for name in classes:
        table.add(name, "")
    new_label = {}
    for name, where in read_class_subset(class_subset):
        old = table.find(name)
        if old is None:
            raise UserError(f"{where}: class {name!r} of the class subset is not a class of the split files")
        if old in new_label:
            raise UserError(f"{where}: class {name!r} is listed twice in the class subset")
        new_label[old] = len(new_label)
    kept = tuple(classes[old] for old in new_label)
    relabelled = [tuple(dataclasses.replace(e, label=new_label[e.label]) for e in entries if e.label in new_label)
                  for entries in entries_by_subset]
    return Split(kept, *relabelled)


_SEPARATORS = re.compile(r"[\\/]")


def _video_id(path_text):
    return os.path.splitext(_SEPARATORS.split(path_text)[-1])[0]


def _parse_ucf_list(path, table, with_labels):
    entries, seen = [], {}
    for number, text in _lines(path):
        fields = text.split()
        if len(fields) not in (1, 2) or (len(fields) == 2 and not fields[1].lstrip("-").isdigit()):
            expected = "'<class>/<video>.avi <label>'" if with_labels else "'<class>/<video>.avi'"
            raise _error(path, number, f"expected {expected}", text)
        video_path = fields[0]
        parts = _SEPARATORS.split(video_path)
        video = _video_id(video_path)
        if len(parts) >= 2:
            class_name = parts[-2]
        else:
            # No class folder: take the class from a UCF-101 file name, v_<Class>_gXX_cYY.
            match = re.fullmatch(r"v_(.+)_g\d+_c\d+", video)
            if not match:
                raise _error(path, number, "cannot tell the class: expected '<class>/<video>.avi'", text)
            class_name = match.group(1)
        label = table.find(class_name)
        if label is None:
            raise _error(path, number, f"unknown class {class_name!r} (not in classInd.txt)", text)
        if len(fields) == 2:
            written = int(fields[1])
            if not 1 <= written <= len(table.names):
                raise _error(path, number, f"label {written} is outside 1..{len(table.names)}", text)
            if written - 1 != label:
                raise _error(path, number, f"label {written} ({table.names[written - 1]}) disagrees with the "
                             f"folder's class {class_name!r} (label {label + 1})", text)
        if video.lower() in seen:
            raise _error(path, number, f"video listed twice (first at line {seen[video.lower()]})", text)
        seen[video.lower()] = number
        entries.append(SplitEntry(video=video, label=label, path=video_path, where=f"{path}:{number}"))
    return entries


def check_disjoint(train, test):
    """Raises UserError naming both lines when a video is in the training and the test list.

    Such a video would be trained on and then scored as unseen; the message names the first one found
    (`file:line` of each) and how many there are.
    """
    in_train = {entry.video.lower(): entry for entry in train}
    both = [(in_train[entry.video.lower()], entry) for entry in test if entry.video.lower() in in_train]
    if both:
        first_train, first_test = both[0]
        more = f" ({len(both)} videos are in both)" if len(both) > 1 else ""
        raise UserError(f"video {first_test.video} is in both the training list ({first_train.where}) and the "
                        f"test list ({first_test.where}){more}: a video must be in one of them")


def load_ucf101_split(split_dir, split=1, class_subset=None):
    """Reads a UCF-101-style split: `classInd.txt`, `trainlist0N.txt`, `testlist0N.txt`.

    Args:
      split_dir: folder of the split files.
      split: split number N (the official lists have 1, 2 and 3).
      class_subset: None for all classes, or a classInd-style file / sequence of class names to keep
        (relabelled 0..k-1 in that order).

    Returns:
      A `Split`.

    Raises:
      UserError: a missing file, a malformed line, an unknown class, a label that disagrees with the
        folder's class (the message names file:line and the line), or a video in both lists (naming both
        lines).
    """
    split_dir = os.fspath(split_dir)
    split = _check_split(split)
    classes = read_class_index(os.path.join(split_dir, "classInd.txt"))
    table = _ClassTable()
    for name in classes:
        table.add(name, "classInd.txt")
    train = _parse_ucf_list(os.path.join(split_dir, f"trainlist{split:02d}.txt"), table, with_labels=True)
    test = _parse_ucf_list(os.path.join(split_dir, f"testlist{split:02d}.txt"), table, with_labels=False)
    check_disjoint(train, test)
    return _apply_subset(classes, (train, test), class_subset)


_HMDB_FILE = re.compile(r"(.+)_test_split(\d+)\.txt")


def load_hmdb51_split(split_dir, split=1, class_subset=None):
    """Reads an HMDB-51-style split: one `<class>_test_split<N>.txt` per class.

    Lines are `<video>.avi <tag>`: 1 = train, 2 = test, 0 = unused (left out). Classes are numbered in the
    order of `class_list.txt` if present, else by sorted file name. Entry paths are `<class>/<video>.avi`.

    Args:
      split_dir: folder of the split files.
      split: split number N.
      class_subset: as for `load_ucf101_split`.

    Returns:
      A `Split`.
    """
    split_dir = os.fspath(split_dir)
    split = _check_split(split)
    files = {}
    for path in glob.glob(os.path.join(glob.escape(split_dir), f"*_test_split{split}.txt")):
        match = _HMDB_FILE.fullmatch(os.path.basename(path))
        if match and int(match.group(2)) == split:
            files[match.group(1)] = path
    if not files:
        raise UserError(f"no HMDB-51 split files '<class>_test_split{split}.txt' in {split_dir}")
    classes = _hmdb_class_order(split_dir, files)
    train, test, seen = [], [], {}
    for label, class_name in enumerate(classes):
        path = files[class_name]
        for number, text in _lines(path):
            fields = text.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise _error(path, number, "expected '<video>.avi <0|1|2>'", text)
            video = _video_id(fields[0])
            if video in seen:
                first_where, first_tag = seen[video]
                if {first_tag, fields[1]} == {"1", "2"}:
                    lines = {first_tag: first_where, fields[1]: f"{path}:{number}"}
                    raise UserError(f"video {video} is in both the training list ({lines['1']}) and the test "
                                    f"list ({lines['2']}): a video must be in one of them")
                raise _error(path, number, f"video already listed at {first_where}", text)
            seen[video] = (f"{path}:{number}", fields[1])
            if fields[1] == "0":
                continue
            entry = SplitEntry(video=video, label=label, path=f"{class_name}/{fields[0]}", where=f"{path}:{number}")
            (train if fields[1] == "1" else test).append(entry)
    return _apply_subset(classes, (train, test), class_subset)


def _hmdb_class_order(split_dir, files):
    """TSN's `class_list.txt` order when the folder has one, else file-name order (the same order)."""
    # Sorting file names, not class names, puts `kick_ball_test_split1.txt` before `kick_test_split1.txt`,
    # as TSN's class_list.txt does.
    by_file_name = sorted(files, key=lambda name: os.path.basename(files[name]))
    list_path = os.path.join(split_dir, "class_list.txt")
    if not os.path.exists(list_path):
        return by_file_name
    listed, where = [], {}
    for number, text in _lines(list_path):
        if len(text.split()) != 1:
            raise _error(list_path, number, "expected one class name", text)
        if text not in files:
            raise _error(list_path, number, f"class has no {text}_test_split<N>.txt file", text)
        if text in where:
            raise _error(list_path, number, f"class already listed at line {where[text]}", text)
        where[text] = number
        listed.append(text)
    unlisted = sorted(set(files) - set(listed))
    if unlisted:
        raise UserError(f"{list_path}: classes with split files are not listed: {', '.join(unlisted)}")
    return listed


def load_split(split_dir, split=1, class_subset=None, dataset="auto"):
    """Reads a split of UCF-101 or HMDB-51 split files.

    Args:
      split_dir: folder of the split files.
      split: split number.
      class_subset: as for `load_ucf101_split`.
      dataset: "ucf101", "hmdb51", or "auto" (UCF-101 when `classInd.txt` exists, else HMDB-51 when
        `<class>_test_split<N>.txt` files exist).

    Returns:
      A `Split`.
    """
    split_dir = os.fspath(split_dir)
    if dataset == "auto":
        if not os.path.isdir(split_dir):
            raise UserError(f"split folder not found: {split_dir}")
        if os.path.exists(os.path.join(split_dir, "classInd.txt")):
            dataset = "ucf101"
        elif glob.glob(os.path.join(glob.escape(split_dir), "*_test_split*.txt")):
            dataset = "hmdb51"
        else:
            raise UserError(f"no split files in {split_dir}: expected classInd.txt with trainlist0N.txt / "
                            "testlist0N.txt (UCF-101), or <class>_test_splitN.txt (HMDB-51)")
    if dataset == "ucf101":
        return load_ucf101_split(split_dir, split, class_subset)
    if dataset == "hmdb51":
        return load_hmdb51_split(split_dir, split, class_subset)
    raise UserError(f"dataset must be 'auto', 'ucf101' or 'hmdb51', got {dataset!r}")


def _check_split(split):
    try:
        number = int(split)
    except (TypeError, ValueError):
        number = None
    if number is None or number < 1 or str(split).strip() != str(number):
        raise UserError(f"split must be a positive integer, got {split!r}")
    return number

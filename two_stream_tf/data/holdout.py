"""Held-out validation videos taken from a split's training list, and stratified subsets of N videos.

Models are selected (best checkpoint, fusion weights) on validation videos, never on the test list. They
come from the training list in one of two ways:

  - `holdout_by_fraction`: a stratified fraction of every class's training videos, drawn with a seed (the
    two-stream TF-slim project held out 1/8). UCF-101's clips of one group `gNN` are cut from the same
    long video (same actor, same scene), so whole groups are held out: a validation clip whose group
    siblings are trained on would be recognised by its background and overstate accuracy. Videos without
    a group in their name (HMDB-51) are drawn one by one.
  - `holdout_from_list`: the videos of a list file in the split's format (`<class>/<video>.avi [label]`
    lines, as trainlist0N.txt), each of which must be a training video.

The held-out videos are removed from the training list. `stratified_subset` picks N videos that cover
the classes evenly (the split files are sorted by class, so their first N videos cover one or two).
"""
import collections
import dataclasses
import os
import random
import re

from two_stream_tf.data.splits import _lines, _video_id
from two_stream_tf.errors import UserError

TF_SLIM_FRACTION = 1 / 8  # the validation share of the two-stream TF-slim project

_GROUP = re.compile(r"_g(\d+)_c\d+$", re.IGNORECASE)


def video_group(video):
    """The UCF-101 group of a video id (`v_ApplyEyeMakeup_g08_c01` -> 8), or None when it has none."""
    match = _GROUP.search(video)
    return int(match.group(1)) if match else None


def holdout_by_fraction(entries, fraction, seed=0, classes=None):
    """Splits training entries into (kept for training, held out for validation), stratified by class.

    In each class, groups of clips (see the module docstring; a video without a group is a group of its
    own) are shuffled with `seed` and held out until their videos reach `fraction` of the class's videos
    rounded to the nearest whole group, at least one group; at least one group stays for training.

    Args:
      entries: the training `SplitEntry`s (or anything with `.video` and `.label`).
      fraction: share of each class's videos to hold out, 0 < fraction < 1.
      seed: the draw's seed: the same entries, fraction and seed give the same split.
      classes: class names, for messages (default: the label numbers).

    Returns:
      `(kept, held_out)`: two tuples of entries, each in the order of `entries`.

    Raises:
      UserError: a fraction outside (0, 1), or a class with fewer than two groups of training videos.
    """
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise UserError(f"the validation fraction must lie strictly between 0 and 1, got {fraction:g}")
    by_class = collections.defaultdict(lambda: collections.defaultdict(list))
    for position, entry in enumerate(entries):
        group = video_group(entry.video)
        by_class[entry.label][("video", entry.video) if group is None else ("group", group)].append(position)
    held_out = set()
    for label in sorted(by_class):
        groups = by_class[label]
        if len(groups) < 2:
            name = classes[label] if classes is not None else f"label {label}"
            count = sum(len(members) for members in groups.values())
            raise UserError(f"class {name!r} has {count} training video(s) in one group: too few to hold "
                            "some out for validation and still train on the class")
        # One generator per class, seeded by (seed, label): a class's draw does not depend on the others.
        rng = random.Random(f"{seed}/{label}")
        order = sorted(groups, key=lambda key: (key[0], str(key[1])))
        rng.shuffle(order)
        total = sum(len(groups[key]) for key in order)
        target = fraction * total
        chosen = 0
        for key in order[:-1]:  # the last group always stays for training
            size = len(groups[key])
            # Take the group when it brings the count closer to the target (and always the first one).
            if chosen and abs(chosen + size - target) >= abs(chosen - target):
                break
            held_out.update(groups[key])
            chosen += size
    kept = tuple(entry for position, entry in enumerate(entries) if position not in held_out)
    held = tuple(entry for position, entry in enumerate(entries) if position in held_out)
    return kept, held


def holdout_from_list(entries, list_path, classes=None, test_entries=(), check_labels=True):
    """Splits training entries into (kept, held out) by a validation list file.

    The file has lines `<class>/<video>.avi` or `<class>/<video>.avi <label>` (1-based label, as in
    trainlist0N.txt); blank lines are skipped. Videos match by id without regard to case.

    Args:
      entries: the training `SplitEntry`s.
      list_path: the validation list file.
      classes: class names (to check written labels and name classes in messages).
      test_entries: the test entries, to say so when a listed video is a test video.
      check_labels: check written labels against the training list's (off under a class subset, whose
        labels are renumbered while a list file keeps classInd.txt's).

    Returns:
      `(kept, held_out)`, each in the order of `entries`.

    Raises:
      UserError: naming `file:line` for a malformed line, a video listed twice, a video that is not in the
        training list (or is in the test list), or a label that disagrees with the training list's.
    """
    path = os.fspath(list_path)
    if not os.path.isfile(path):
        raise UserError(f"validation list not found: {path}")
    by_id = {entry.video.lower(): position for position, entry in enumerate(entries)}
    test_ids = {entry.video.lower() for entry in test_entries}
    held_out, seen = set(), {}
    for number, text in _lines(path):
        fields = text.split()
        if len(fields) not in (1, 2) or (len(fields) == 2 and not fields[1].lstrip("-").isdigit()):
            raise UserError(f"{path}:{number}: expected '<class>/<video>.avi' or '<class>/<video>.avi <label>': "
                            f"{text!r}")
        video = _video_id(fields[0]).lower()
        if video in seen:
            raise UserError(f"{path}:{number}: video listed twice (first at line {seen[video]}): {text!r}")
        seen[video] = number
        if video not in by_id:
            where = "it is a test video" if video in test_ids else "validation videos come from the training list"
            raise UserError(f"{path}:{number}: video not in the training list ({where}): {text!r}")
        entry = entries[by_id[video]]
        if check_labels and len(fields) == 2 and int(fields[1]) - 1 != entry.label:
            name = classes[entry.label] if classes is not None else f"label {entry.label + 1}"
            raise UserError(f"{path}:{number}: label {fields[1]} disagrees with the training list's "
                            f"{entry.label + 1} ({name}): {text!r}")
        held_out.add(by_id[video])
    if not held_out:
        raise UserError(f"{path}: the validation list names no videos")
    if len(held_out) == len(entries):
        raise UserError(f"{path}: the validation list holds every training video; none would be left to train on")
    kept = tuple(entry for position, entry in enumerate(entries) if position not in held_out)
    held = tuple(entry for position, entry in enumerate(entries) if position in held_out)
    return kept, held


def format_list(entries):
    """Entries as a validation list file's text: `<class>/<video>.avi` lines, as testlist0N.txt (without
    labels, so the file means the same with or without a class subset)."""
    return "".join(f"{entry.path}\n" for entry in entries)


def stratified_subset(entries, count, seed=0):
    """`count` entries spread evenly over the classes, in their original order.

    Classes take turns (in label order) giving one video each, drawn at random with `seed`, until `count`
    videos are chosen; a class that runs out drops out of the turns. So every class with videos is present
    when `count` is at least the number of classes.

    Args:
      entries: a sequence of entries with `.label` (split entries or index entries).
      count: how many to keep; 0 or at least `len(entries)` keeps them all.
      seed: the draw's seed.

    Returns:
      A tuple of entries in the order of `entries`.
    """
    entries = tuple(entries)
    if not count or count >= len(entries):
        return entries
    by_class = collections.defaultdict(list)
    for position, entry in enumerate(entries):
        by_class[entry.label].append(position)
    rng = random.Random(f"subset/{seed}")
    queues = []
    for label in sorted(by_class):
        positions = list(by_class[label])
        rng.shuffle(positions)
        queues.append(positions)
    chosen = set()
    while len(chosen) < count:
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.add(queue.pop())
    return tuple(entry for position, entry in enumerate(entries) if position in chosen)


def stratified_index(index, count, seed=0):
    """A `DatasetIndex` narrowed to `stratified_subset(index.entries, count, seed)`."""
    if not count or count >= len(index):
        return index
    return dataclasses.replace(index, entries=stratified_subset(index.entries, count, seed))

"""How long the dataset index takes to build from scratch, and to re-open from its cache.

Generates a UCF-101-sized tree in a temporary folder (13,320 video folders of 101 classes, 20 frames and
19 flow pairs each, as hard links to one empty file: the index reads only names), indexes it cold (no cache
file), re-opens it (cache valid), re-opens it after 1 % of the folders changed, and deletes the tree. All
times come from one run, so the ratios compare like with like. The operating system's file cache is warm in
every phase (the tree was just written), as when a training job starts after the previous one.

    python benchmarks/index_cache.py
    python benchmarks/index_cache.py --videos 2000 --json
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from two_stream_tf.data.index import CACHE_FILE_NAME, build_index  # noqa: E402
from two_stream_tf.data.splits import SplitEntry  # noqa: E402

PAST = 1_500_000_000  # folder times set in the past, as for a dataset written earlier


def make_tree(root, num_videos, num_classes, frames, per_class):
    """Writes empty frame files; returns the split entries and class names."""
    classes = [f"Action{c:03d}" for c in range(num_classes)]
    entries = []
    for i in range(num_videos):
        label = i % num_classes
        video = f"v_{classes[label]}_g{i // num_classes % 25 + 1:02d}_c{i // (num_classes * 25) + 1:02d}"
        relative = f"{classes[label]}/{video}" if per_class else video
        folder = os.path.join(root, relative)
        os.makedirs(folder)
        names = [f"{prefix}{n:05d}.jpg" for prefix, count in (("img_", frames), ("flow_x_", frames - 1),
                                                             ("flow_y_", frames - 1)) for n in range(1, count + 1)]
        first = os.path.join(folder, names[0])
        open(first, "wb").close()
        # Hard links to one empty file per video: ten times faster to make than files, and no disk blocks.
        for name in names[1:]:
            os.link(first, os.path.join(folder, name))
        os.utime(folder, (PAST, PAST))
        entries.append(SplitEntry(video, label, f"{classes[label]}/{video}.avi"))
    return entries, classes


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def run(num_videos, num_classes, frames, per_class):
    root = tempfile.mkdtemp(prefix="index_cache_benchmark_")
    try:
        make_seconds, (entries, classes) = timed(lambda: make_tree(root, num_videos, num_classes, frames, per_class))
        cold, index = timed(lambda: build_index(root, entries, classes))
        assert len(index) == num_videos and index.entries[0].num_frames == frames
        cache_bytes = os.path.getsize(os.path.join(root, CACHE_FILE_NAME))
        cached = min(timed(lambda: build_index(root, entries, classes))[0] for _ in range(3))
        # Touch 1 % of the folders (as if their frames were re-extracted): only those are counted again.
        changed = entries[:: 100]
        for e in changed:
            folder = os.path.join(root, f"{classes[e.label]}/{e.video}" if per_class else e.video)
            os.utime(folder, (PAST + 60, PAST + 60))
        partly, _ = timed(lambda: build_index(root, entries, classes))
        files = num_videos * (3 * frames - 2)
        return {
            "videos": num_videos, "classes": num_classes, "files": files,
            "arrangement": "per class" if per_class else "flat",
            "make_tree_seconds": round(make_seconds, 2),
            "cold_build_seconds": round(cold, 3),
            "cached_reopen_seconds": round(cached, 3),
            "reopen_after_1pct_changed_seconds": round(partly, 3),
            "cold_over_cached": round(cold / cached, 1),
            "cache_file_bytes": cache_bytes,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=13320, help="video folders (default: UCF-101's 13,320)")
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--frames", type=int, default=20, help="RGB frames per video (flow pairs: one fewer)")
    parser.add_argument("--per-class", action="store_true", help="<root>/<Class>/<video> instead of flat")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.videos, args.classes, args.frames, args.per_class)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['videos']} videos ({result['arrangement']}), {result['files']:,} files; tree written in "
          f"{result['make_tree_seconds']} s")
    print(f"  cold build (no cache):           {result['cold_build_seconds']:.3f} s")
    print(f"  cached re-open:                  {result['cached_reopen_seconds']:.3f} s  "
          f"({result['cold_over_cached']}x faster)")
    print(f"  re-open, 1 % of folders changed: {result['reopen_after_1pct_changed_seconds']:.3f} s")
    print(f"  cache file:                      {result['cache_file_bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

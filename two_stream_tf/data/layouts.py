"""Frame layouts: where a video's RGB frames and x/y flow images live, and how they are numbered.

Frame numbers are 0-based everywhere in this library; a layout's `start` is the number written in the
file name of frame 0 (1 for TSN's dense_flow, the twostreamfusion dumps and mmaction2; 0 for denseflow).

Layouts (see DESIGN.md):

  tsn              <video>/img_00001.jpg, <video>/flow_x_00001.jpg, <video>/flow_y_00001.jpg  (1-based)
  denseflow        the same names, 0-based (what open-mmlab's denseflow writes)
  twostreamfusion  jpegs_256/<video>/frame000001.jpg, tvl1_flow/u/<video>/frame000001.jpg,
                   tvl1_flow/v/<video>/frame000001.jpg                                      (1-based)
  mmaction2        <video>/img_00001.jpg, <video>/x_00001.jpg, <video>/y_00001.jpg          (1-based)

`<video>` is a folder path relative to the dataset root, e.g. `v_ApplyEyeMakeup_g01_c01` or
`ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01`.
"""
import dataclasses
import os

from two_stream_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one frame layout names its files.

    Attributes:
      name: the layout's name, a key of `LAYOUTS`.
      rgb_dir, flow_x_dir, flow_y_dir: folder of a video's files relative to the dataset root, with
        `{video}` standing for the video's folder path.
      rgb_prefix, flow_x_prefix, flow_y_prefix: file name before the number.
      digits: zero-padded width of the number.
      start: the number in the file name of frame 0.
      extension: file name after the number.
    """

    name: str
    rgb_dir: str
    flow_x_dir: str
    flow_y_dir: str
    rgb_prefix: str
    flow_x_prefix: str
    flow_y_prefix: str
    digits: int
    start: int = 1
    extension: str = ".jpg"

    def _file(self, folder, prefix, video, index):
        return f"{folder.format(video=video)}/{prefix}{index + self.start:0{self.digits}d}{self.extension}"

    def rgb_file(self, video, index):
        """Path, relative to the dataset root, of RGB frame `index` (0-based) of `video`."""
        return self._file(self.rgb_dir, self.rgb_prefix, video, index)

    def flow_files(self, video, index):
        """Paths, relative to the dataset root, of the x and y images of flow pair `index` (0-based)."""
        return (self._file(self.flow_x_dir, self.flow_x_prefix, video, index),
                self._file(self.flow_y_dir, self.flow_y_prefix, video, index))

    def with_start(self, start):
        """The same layout numbered from `start`."""
        return dataclasses.replace(self, start=start)


LAYOUTS = {
    "tsn": Layout("tsn", "{video}", "{video}", "{video}", "img_", "flow_x_", "flow_y_", digits=5, start=1),
    "denseflow": Layout("denseflow", "{video}", "{video}", "{video}", "img_", "flow_x_", "flow_y_", digits=5, start=0),
    "twostreamfusion": Layout("twostreamfusion", "jpegs_256/{video}", "tvl1_flow/u/{video}", "tvl1_flow/v/{video}",
                              "frame", "frame", "frame", digits=6, start=1),
    "mmaction2": Layout("mmaction2", "{video}", "{video}", "{video}", "img_", "x_", "y_", digits=5, start=1),
}


# --- Choosing and detecting a layout -------------------------------------------------------------------

AUTO = "auto"

# The layouts whose RGB and flow files share one folder per video, told apart by their flow file names
# and by whether numbering starts at 0 or 1.
_SINGLE_FOLDER = ("tsn", "denseflow", "mmaction2")
TWOSTREAMFUSION_MARKER = "jpegs_256"


def numbered_file_name(layout, prefix, number):
    """The file name `layout` gives to `number` (as written on disk, not a 0-based index) after `prefix`."""
    return f"{prefix}{number:0{layout.digits}d}{layout.extension}"


def get_layout(layout):
    """The `Layout` for a name in `LAYOUTS` or a `Layout`; None for "auto" (detect it).

    Raises:
      UserError: an unknown name.
    """
    if isinstance(layout, Layout):
        return layout
    if layout is None or layout == AUTO:
        return None
    if layout not in LAYOUTS:
        raise UserError(f"unknown frame layout {layout!r}; choose auto or one of {', '.join(LAYOUTS)}")
    return LAYOUTS[layout]


def single_folder_layout(flow_x_prefix, start):
    """The one-folder-per-video layout with this flow x prefix ("flow_x_" or "x_"), numbered from `start`.

    TSN's dense_flow and open-mmlab's denseflow share their names and differ in `start` (1 / 0); the
    mmaction2 naming keeps its name whatever the start.
    """
    for name in _SINGLE_FOLDER:
        layout = LAYOUTS[name]
        if layout.flow_x_prefix == flow_x_prefix and layout.start == start:
            return layout
    for name in _SINGLE_FOLDER:
        if LAYOUTS[name].flow_x_prefix == flow_x_prefix:
            return LAYOUTS[name].with_start(start)
    raise ValueError(f"no layout names flow x files {flow_x_prefix!r}")


def layout_from_file_names(names):
    """Which one-folder layout a video folder's file names follow, with `start` read from the names.

    The start is 0 when `img_00000.jpg` exists and 1 when `img_00001.jpg` does (never guessed); flow
    files `flow_x_*` mean TSN/denseflow naming, `x_*` mmaction2's. A folder of RGB frames only gets TSN
    naming.

    Args:
      names: file names in one video folder.

    Returns:
      A `Layout`, or None when the folder has neither `img_00000.jpg` nor `img_00001.jpg`.
    """
    names = set(names)
    tsn = LAYOUTS["tsn"]
    if numbered_file_name(tsn, tsn.rgb_prefix, 0) in names:
        start = 0
    elif numbered_file_name(tsn, tsn.rgb_prefix, 1) in names:
        start = 1
    else:
        return None
    mmaction2_x = LAYOUTS["mmaction2"].flow_x_prefix
    if any(name.startswith(mmaction2_x) for name in names) and not any(
            name.startswith(tsn.flow_x_prefix) for name in names):
        return single_folder_layout(mmaction2_x, start)
    return single_folder_layout(tsn.flow_x_prefix, start)


def detect_layout(root):
    """Detects the frame layout of a dataset root by looking at it (no guessing).

    The twostreamfusion layout is recognised by its `jpegs_256` folder; otherwise the first video folder
    holding `img_` frames, at `<root>/<video>` or `<root>/<Class>/<video>`, decides with
    `layout_from_file_names`. `two_stream_tf.data.index` detects from every video instead, and reports
    videos that disagree.

    Returns:
      A `Layout` with `start` resolved.

    Raises:
      UserError: no video folder with frames numbered from 0 or 1 was found.
    """
    if os.path.isdir(os.path.join(root, TWOSTREAMFUSION_MARKER)):
        return LAYOUTS["twostreamfusion"]
    if not os.path.isdir(root):
        raise UserError(f"frames folder not found: {root}")
    pending = [(root, 0)]
    while pending:
        folder, depth = pending.pop(0)
        with os.scandir(folder) as listing:
            children = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
        names = [e.name for e in children]
        if any(name.startswith(LAYOUTS["tsn"].rgb_prefix) for name in names):
            layout = layout_from_file_names(names)
            if layout is not None:
                return layout
        if depth < 2:
            pending.extend((e.path, depth + 1) for e in children if e.is_dir())
    raise UserError(f"cannot tell the frame layout of {root}: no <video>/img_00000.jpg or img_00001.jpg found "
                    f"at <root>/<video> or <root>/<Class>/<video>, and no {TWOSTREAMFUSION_MARKER}/ folder")

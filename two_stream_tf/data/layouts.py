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

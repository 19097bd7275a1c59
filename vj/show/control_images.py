"""The files a show's ControlNets take their control images from, each opened once for the whole show.

A picture is read at the frame's size (Lanczos, as diffusers' pipelines read a PIL picture) and read again when
its file changes; a video file plays from the show's start and loops: a render decodes the frame of each output
time (the same every time), a live show plays it in real time on the source's own thread and takes its newest
frame. Hot reloads and typed prompts keep what is open; files no preset uses any more stay open until the show
ends (there are a few at most).
"""

from vj.errors import VjError


class ControlImages:
    """Control pictures and videos by path; `image(item, t)` is an item's HxWx3 uint8 picture at show time `t`."""

    def __init__(self, width, height, live=False):
        self.size = (width, height)
        self.live = live
        self._pictures = {}  # path -> ((mtime, size), picture)
        self._videos = {}  # path -> VideoSource
        self.warning = None  # the last file that could not be read (the live HUD shows it)

    def image(self, item, t):
        """The picture of ControlNetItem `item` (its `image` a Path) at show time `t`, or None (a video before its
        first frame, or a file that cannot be read now: the net rests and `warning` says why)."""
        try:
            if not item.video_file:
                return self._picture(item.image)
            frame = self._video(item.image).frame_for(t)
            return None if frame is None else frame.rgb
        except (OSError, VjError) as exc:
            self.warning = f"ControlNet image {item.image.name}: {str(exc).splitlines()[0]}"
            return None

    def _picture(self, path):
        from vj.show.session import load_image

        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        kept = self._pictures.get(path)
        if kept is None or kept[0] != stamp:
            kept = self._pictures[path] = (stamp, load_image(path, *self.size))
        return kept[1]

    def _video(self, path):
        source = self._videos.get(path)
        if source is None:
            from vj.video.sources.specs import open_video

            source = self._videos[path] = open_video(str(path), *self.size, live=self.live, loop=True)
        return source

    def close(self):
        """Let the videos go."""
        for source in self._videos.values():
            source.close()
        self._videos.clear()

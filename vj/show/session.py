"""One show session for every command: preset -> models -> engines -> Director -> transitions, built once here.

`vj render`, `vj live`, `vj prerender` and `vj morph` each open a ShowSession and differ only in the clock, the
inputs and the driver around it: a render steps frame i at start + i/fps from the track's analysis into an MP4, a
live show steps by the wall clock from the sound card into a window, prerender computes the transitions and morph
renders txt2img frames. Replay, video in and the ControlNets' images plug in here too.
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np

from vj.config.loading import PresetError
from vj.show.control_images import ControlImages
from vj.show.director import Director
from vj.show.engines import build_engines, engine_settings


def load_image(path, width, height):
    """The picture at `path` (a file or a URL) as uint8 HxWx3 at the frame's size, or PresetError naming it."""
    from PIL import Image, UnidentifiedImageError

    from vj.config.loading import picture_file  # a URL is downloaded (or read from the cache) here

    path = picture_file(str(path), Path("."))  # a file's path is already resolved against the preset
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((width, height), Image.LANCZOS))
    except (OSError, UnidentifiedImageError) as exc:
        raise PresetError([f"init_image '{path}' cannot be read ({exc})"]) from None


def open_show_video(preset, video_in=None, live=False):
    """The preset's video source (`video_in` replaces video_path), or None outside Video Source mode."""
    spec = video_in or (preset.video_path if preset.animation_mode == "Video Source" else None)
    if not spec:
        return None
    from vj.video.sources.specs import open_video

    base = Path(preset.path).parent if preset.path else Path(".")
    return open_video(
        str(spec), preset.width, preset.height, stride=preset.frame_stride, live=live, loop=preset.video_loop, base=base
    )


@dataclasses.dataclass
class ShowSession:
    """A preset's models and the makers of everything that renders it; open one with `ShowSession.open`."""

    preset: object
    engines: object  # EngineFactory: EngineSettings -> a frame engine (diffusion or pixel model)
    video: object = None  # the VideoSource of Video Source mode, or None
    control_images: object = None  # ControlImages: the ControlNets' picture and video files
    _transitions: object = None

    @classmethod
    def open(cls, preset, device="auto", dtype="auto", compile=False, guidance=True, video_in=None, live=False):
        """Load the preset's models on `device`, and open its video source in Video Source mode (`video_in`, the
        live show's --video-in, replaces video_path and puts the show in that mode): a render's decodes the frame
        of each output time, a live show's decodes on its own thread. Without `guidance` (prerender, morph) only
        the diffusion components load: no perceptors, guide images, init image, palette picture or video."""
        init = load_image(preset.init_image, preset.width, preset.height) if guidance and preset.init_image else None
        video = open_show_video(preset, video_in, live) if guidance else None
        images = ControlImages(preset.width, preset.height, live)
        try:
            return cls(preset, build_engines(preset, device, dtype, compile, init, guidance=guidance), video, images)
        except BaseException:
            if video is not None:
                video.close()
            raise

    def close(self):
        """Let the video sources go (the models go with the session)."""
        if self.video is not None:
            self.video.close()
        if self.control_images is not None:
            self.control_images.close()

    @property
    def components(self):
        """The diffusion components (None for pytti's pixel models)."""
        return self.engines.components

    @property
    def settings(self):
        """The engine's settings at the preset's size."""
        return engine_settings(self.preset)

    def engine(self, settings=None):
        """A new frame engine (at the preset's size unless `settings` says otherwise)."""
        return self.engines(settings or self.settings)

    @property
    def transitions(self):
        """The latent-blend Transitions over this session's components (made on first use; None for pixel
        models). Live shows keep one whatever the mode, so a reload to latent_blend finds it."""
        if self._transitions is None and self.components is not None:
            from vj.engine.transitions.cache import TransitionCache
            from vj.show.blends import Transitions

            self._transitions = Transitions(self.components, self.preset, TransitionCache())
        return self._transitions

    def blends(self):
        """Whether the preset's scene changes are latent-blend transitions."""
        return self.preset.transition_mode == "latent_blend" and self.components is not None

    def prepare(self, pairs, desc="transitions"):
        """Compute (or find in the cache) the transitions of scene `pairs`, with a progress bar on stderr;
        returns how many were already cached."""
        from tqdm import tqdm

        from vj.show.blends import prepare

        with tqdm(total=len(pairs), unit="transition", desc=desc, file=sys.stderr, dynamic_ncols=True) as progress:
            return prepare(self.transitions, pairs, progress)

    def director(self):
        """A Director for the preset, playing latent-blend transitions when the preset blends."""
        return Director(
            self.preset,
            transitions=self.transitions if self.blends() else None,
            video=self.video,
            control_images=self.control_images,
        )

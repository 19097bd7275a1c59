"""NDI output: the shown frames as an NDI source on the network (Resolume, TouchDesigner, OBS with DistroAV, VDMX,
MadMapper). Needs the NDI extra, `pip install 'vj[ndi]'` (cyndilib, whose wheels bundle the NDI runtime, a
proprietary but free library with its own licence: README's "Video out"). cyndilib is imported only here, inside
the functions, so vj runs and installs without it.

Frames go as RGBX (the receiver's NDI library compresses them with SpeedHQ) through `write_video_async`, which
copies the frame and returns while NDI sends it; cyndilib releases the GIL in its send calls. The source is named
"HOST (NAME)" on the network: receivers list it by discovery (mDNS through avahi on Linux, Bonjour on macOS, or
NDI's discovery server / extra IPs from NDI Access Manager and `ndi-config.v1.json`). No receiver is no problem:
NDI drops frames nobody takes, and the output reports nothing."""

import importlib.util
from fractions import Fraction

import numpy as np

from vj.video.outputs.threaded import ThreadedOutput

INSTALL = "pip install 'vj[ndi]'"


def check_ndi(name):
    """None when ndi:NAME can be made here, else one line saying why not."""
    if not name.strip():
        return "ndi: needs a source name, as in ndi:vj"
    if importlib.util.find_spec("cyndilib") is None:
        return f"ndi:{name} needs the NDI extra: {INSTALL} (cyndilib, which bundles the NDI runtime)"
    return None


class NdiOutput(ThreadedOutput):
    """ndi:NAME (see the module's text)."""

    def __init__(self, target, width, height, fps, **kw):
        self.name = target.split(":", 1)[1].strip()
        self._sender = None
        super().__init__(target, width, height, fps, **kw)

    def open_sink(self):
        from cyndilib import AudioSendFrame, FourCC, Sender, VideoSendFrame

        sender = Sender(self.name, clock_video=False, clock_audio=False)  # the show keeps the pace
        video = VideoSendFrame()
        video.set_fourcc(FourCC.RGBX)
        video.set_frame_rate(Fraction(self.fps).limit_denominator(1001))
        video.set_resolution(self.width, self.height)
        sender.set_video_frame(video)
        # cyndilib 0.1.3's Sender.open, when NDI refuses to make the sender, cleans up the audio frame without
        # checking that there is one (a segfault): give it one, never written, so a failed open is an exception
        audio = AudioSendFrame()
        audio.sample_rate, audio.num_channels = 48000, 2
        audio.set_max_num_samples(1600)
        sender.set_audio_frame(audio)
        sender.open()
        self._sender = sender
        self._rgbx = np.full((self.height, self.width, 4), 255, np.uint8)

    def write_frame(self, rgb, at):
        self._rgbx[..., :3] = rgb
        if not self._sender.write_video_async(self._rgbx.reshape(-1)):
            raise OSError("the NDI sender stopped")

    def close_sink(self):
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()

"""Spout output (Windows): the shown frames as a Spout sender (Resolume, TouchDesigner's Syphon Spout In TOP,
MadMapper, OBS with the Spout2 plugin). Needs the Spout extra, `pip install 'vj[spout]'` (SpoutGL), imported only
here, inside the functions; refused on other systems. SpoutGL makes its own hidden OpenGL context when the thread
has none, on the output's thread, which keeps it."""

import importlib.util
import sys

from vj.video.outputs.threaded import ThreadedOutput

INSTALL = "pip install 'vj[spout]'"
GL_RGB = 0x1907  # OpenGL's GL_RGB, without importing PyOpenGL for one constant


def check_spout(name, platform=None):
    """None when spout:NAME can be made here, else one line saying why not."""
    platform = platform or sys.platform
    if not name.strip():
        return "spout: needs a sender name, as in spout:vj"
    if platform != "win32":
        return f"spout:{name}: Spout is Windows only; on macOS use syphon:{name}, anywhere ndi:{name}"
    if importlib.util.find_spec("SpoutGL") is None:
        return f"spout:{name} needs the Spout extra: {INSTALL} (SpoutGL)"
    return None


class SpoutOutput(ThreadedOutput):
    """spout:NAME (see the module's text)."""

    def __init__(self, target, width, height, fps, **kw):
        self.name = target.split(":", 1)[1].strip()
        self._sender = None
        super().__init__(target, width, height, fps, **kw)

    def open_sink(self):
        import SpoutGL

        sender = SpoutGL.SpoutSender()
        sender.setSenderName(self.name)
        self._sender = sender

    def write_frame(self, rgb, at):
        height, width = rgb.shape[:2]
        if not self._sender.sendImage(rgb, width, height, GL_RGB, False, 0):
            raise OSError("Spout could not share the frame (no OpenGL context or shared texture)")
        self._sender.setFrameSync(self.name)

    def close_sink(self):
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.releaseSender()

"""Syphon output (macOS 12+): the shown frames as a Syphon server (Resolume, MadMapper, VDMX, TouchDesigner's
Syphon Spout In TOP, OBS's Syphon Client). Needs the Syphon extra, `pip install 'vj[syphon]'` (syphon-python: a
Metal server fed from numpy), imported only here, inside the functions; refused on other systems."""

import importlib.util
import sys

import numpy as np

from vj.video.outputs.threaded import ThreadedOutput

INSTALL = "pip install 'vj[syphon]'"


def check_syphon(name, platform=None):
    """None when syphon:NAME can be made here, else one line saying why not."""
    platform = platform or sys.platform
    if not name.strip():
        return "syphon: needs a server name, as in syphon:vj"
    if platform != "darwin":
        return f"syphon:{name}: Syphon is macOS only; on Windows use spout:{name}, anywhere ndi:{name}"
    if importlib.util.find_spec("syphon") is None:
        return f"syphon:{name} needs the Syphon extra: {INSTALL} (syphon-python)"
    return None


class SyphonOutput(ThreadedOutput):
    """syphon:NAME (see the module's text)."""

    def __init__(self, target, width, height, fps, **kw):
        self.name = target.split(":", 1)[1].strip()
        self._server = self._texture = None
        super().__init__(target, width, height, fps, **kw)

    def open_sink(self):
        import syphon
        from syphon.utils.raw import create_mtl_texture

        self._server = syphon.SyphonMetalServer(self.name)
        self._texture = create_mtl_texture(self._server.device, self.width, self.height)
        self._rgba = np.full((self.height, self.width, 4), 255, np.uint8)

    def write_frame(self, rgb, at):
        from syphon.utils.numpy import copy_image_to_mtl_texture

        self._rgba[..., :3] = rgb
        copy_image_to_mtl_texture(self._rgba, self._texture)
        self._server.publish_frame_texture(self._texture)

    def close_sink(self):
        server, self._server, self._texture = self._server, None, None
        if server is not None:
            server.stop()

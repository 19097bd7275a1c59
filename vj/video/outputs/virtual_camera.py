"""Virtual camera output (`virtualcam`): the shown frames as a webcam other programs open (Zoom, browsers, OBS,
TouchDesigner's Video Device In). Needs the virtual camera extra, `pip install 'vj[virtualcam]'` (pyvirtualcam),
and a virtual camera device: on Linux v4l2loopback (`sudo modprobe v4l2loopback exclusive_caps=1
card_label=vj`), on Windows and macOS the OBS Virtual Camera (installed with OBS; start it once from OBS on
macOS). pyvirtualcam is imported only here, inside the functions."""

import glob
import importlib.util
import sys

from vj.video.outputs.threaded import ThreadedOutput

INSTALL = "pip install 'vj[virtualcam]'"
LOOPBACK = "sudo modprobe v4l2loopback exclusive_caps=1 card_label=vj"


def loopback_devices():
    """The v4l2loopback devices of this Linux machine (virtual video4linux devices)."""
    return sorted(glob.glob("/sys/devices/virtual/video4linux/video*"))


def check_virtual_camera():
    """None when `virtualcam` can be opened here (as far as can be told without opening it), else why not."""
    if importlib.util.find_spec("pyvirtualcam") is None:
        return f"virtualcam needs the virtual camera extra: {INSTALL} (pyvirtualcam)"
    if sys.platform.startswith("linux") and not loopback_devices():
        return f"virtualcam needs a v4l2loopback device on Linux, and there is none: {LOOPBACK}"
    return None


class VirtualCameraOutput(ThreadedOutput):
    """`virtualcam` (see the module's text). `backend` and `device` go to pyvirtualcam.Camera as they are."""

    def __init__(self, target, width, height, fps, *, backend=None, device=None, **kw):
        self.backend, self.device = backend, device
        self._camera = None
        super().__init__(target, width, height, fps, **kw)

    def open_sink(self):
        import pyvirtualcam

        self._camera = pyvirtualcam.Camera(
            self.width,
            self.height,
            self.fps,
            fmt=pyvirtualcam.PixelFormat.RGB,
            device=self.device,
            backend=self.backend,
        )

    def write_frame(self, rgb, at):
        self._camera.send(rgb)

    def close_sink(self):
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.close()

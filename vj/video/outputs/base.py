"""The one interface every output has: NDI, SRT/UDP, a virtual camera, Spout and Syphon look the same to a show."""

from typing import Protocol, runtime_checkable


@runtime_checkable
class FrameOutput(Protocol):
    """A receiver of the frames a show shows (without the HUD, at the engine's size and rate)."""

    target: str  # as given on the command line: "srt://127.0.0.1:9000", "ndi:vj", "virtualcam"

    def send(self, rgb) -> None:
        """Hand over a frame (uint8 height x width x 3). Never blocks: the newest frame replaces one not yet
        sent (counted as dropped); sending happens on the output's own thread."""

    @property
    def warning(self) -> str | None:
        """What the HUD should say about this output now (a dead receiver, retrying), or None."""

    def stats(self) -> dict:
        """{"sent": n, "dropped": n, "errors": n}."""

    def close(self) -> None:
        """Stop sending and let the connection or device go."""

"""Sound devices through PortAudio: finding one by name or index, listing them and rescanning the list, so a
live source opens the device the user named (or says which ones there are) and a device plugged in later is found.

A rescan closes every open stream of the process: `PA_LOCK` keeps opening, closing and rescanning apart, and
`OPEN_STREAMS` tells whether a rescan is safe.
"""

import threading
from typing import NamedTuple

from vj.errors import AudioError

LATENCIES = ("low", "high")
PORTAUDIO_MISSING = (
    "the PortAudio library is not installed: install the system package libportaudio2 "
    "(Debian/Ubuntu: sudo apt-get install libportaudio2)"
)


class LiveAudioError(AudioError):
    """A live audio device that cannot be used; the one-line message names it and lists the valid ones."""


class AudioDevice(NamedTuple):
    """One PortAudio device as `vj devices` lists it (channels: its inputs or its outputs)."""

    index: int
    name: str
    channels: int
    default_samplerate: float


def portaudio():
    """The sounddevice module, or LiveAudioError when PortAudio (or sounddevice itself) is missing."""
    try:
        import sounddevice
    except OSError:  # the pip wheel carries no PortAudio on Linux
        raise LiveAudioError(PORTAUDIO_MISSING) from None
    except ImportError:
        raise LiveAudioError("the Python package sounddevice is not installed: pip install sounddevice") from None
    return sounddevice


def list_audio_devices():
    """(inputs, outputs): the PortAudio devices able to record and to play, as AudioDevice tuples."""
    sd = portaudio()
    inputs, outputs = [], []
    for index, info in enumerate(sd.query_devices()):
        for kind, found in (("input", inputs), ("output", outputs)):
            channels = info[f"max_{kind}_channels"]
            if channels > 0:
                found.append(AudioDevice(index, info["name"], channels, info["default_samplerate"]))
    return inputs, outputs


PA_LOCK = threading.RLock()  # serializes opening, closing and rescanning across threads
OPEN_STREAMS = set()  # the KeptStream objects with an open stream (a rescan would close them)


def rescan_devices():
    """Re-read PortAudio's device list (devices plugged in, sound servers started since it was read).

    PortAudio can only do this by terminating, which closes every open stream of the process: call it only
    when none is open.
    """
    sd = portaudio()
    with PA_LOCK:
        sd._terminate()  # the maintainer's advice (python-sounddevice issue #125); private functions
        sd._initialize()


def device_listing(sd, kind):
    """The `kind` ('input' or 'output') devices as error messages list them: "0 'name', 3 'name'" or "none"."""
    devices = [(i, d["name"]) for i, d in enumerate(sd.query_devices()) if d[f"max_{kind}_channels"] > 0]
    return ", ".join(f"{i} '{name}'" for i, name in devices) or "none"


def find_device(sd, device, kind):
    """Index of the `kind` ('input' or 'output') device `device`: None (the default), an index (int or digits)
    or a case-insensitive part of its name; LiveAudioError listing the devices if there is no such one."""
    infos = sd.query_devices()
    usable = [i for i, d in enumerate(infos) if d[f"max_{kind}_channels"] > 0]
    if device is None:
        index = sd.default.device[0 if kind == "input" else 1]
        if index is None or index not in usable:
            raise LiveAudioError(f"no default audio {kind}; {kind}s: {device_listing(sd, kind)}")
        return index
    if isinstance(device, int) or str(device).strip().isdigit():
        if int(device) not in usable:
            raise LiveAudioError(f"no audio {kind} with index {int(device)}; {kind}s: {device_listing(sd, kind)}")
        return int(device)
    query = str(device).lower()
    matches = [i for i in usable if query in infos[i]["name"].lower()]
    exact = [i for i in matches if infos[i]["name"].lower() == query]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise LiveAudioError(f"no audio {kind} matching '{device}'; {kind}s: {device_listing(sd, kind)}")
    names = ", ".join(f"{i} '{infos[i]['name']}'" for i in matches)
    raise LiveAudioError(f"audio {kind} '{device}' is ambiguous ({names}); give its index or more of its name")


def resolve_device(sd, device, kind):
    """find_device, after rescanning once if the device is not listed and no stream is open (it may have been
    plugged in, or its sound server started, since PortAudio listed the devices)."""
    with PA_LOCK:
        try:
            return find_device(sd, device, kind)
        except LiveAudioError:
            if OPEN_STREAMS:
                raise
            rescan_devices()
            return find_device(sd, device, kind)


def check_latency(latency):
    """`latency` as PortAudio takes it ('low', 'high' or seconds > 0); LiveAudioError for anything else."""
    if latency in LATENCIES or (isinstance(latency, (int, float)) and not isinstance(latency, bool) and latency > 0):
        return latency
    raise LiveAudioError(f"audio latency {latency!r} is not valid: 'low', 'high' or seconds > 0")

"""`vj devices`: what a show can use on this machine, per subsystem (engine, audio, MIDI, displays, cameras, NDI
sources); a subsystem without devices says so."""

import os


def _audio():
    from vj.audio.sources.devices import list_audio_devices
    from vj.errors import AudioError

    try:
        inputs, outputs = list_audio_devices()
    except AudioError as exc:
        return [f"audio: {exc}"]
    lines = []
    for title, devices in (("audio inputs", inputs), ("audio outputs", outputs)):
        if not devices:
            lines.append(f"{title}: none")
            continue
        lines.append(f"{title}:")
        lines += [f"  {index}: '{name}' ({channels} ch, {rate:g} Hz)" for index, name, channels, rate in devices]
    return lines


def _midi():
    from vj.live.controls.midi.ports import MidiError, midi_port_names

    try:
        names = midi_port_names()
    except MidiError as exc:
        return [f"MIDI inputs: {exc}"]
    return ["MIDI inputs: none"] if not names else ["MIDI inputs:"] + [f"  '{n}'" for n in names]


def _displays():
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return ["displays: none (no DISPLAY: run from a desktop session or set DISPLAY)"]
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    try:
        pygame.display.init()
        sizes = pygame.display.get_desktop_sizes()
    except pygame.error as exc:
        return [f"displays: none ({exc})"]
    finally:
        pygame.display.quit()
    return ["displays:"] + [f"  {i}: {w}x{h}" for i, (w, h) in enumerate(sizes)]


def _engine():
    from vj.engine.devices import available_devices, describe

    here = available_devices()
    return [f"engine devices (--device; auto picks {here[0]}):"] + [f"  {describe(name)}" for name in here]


def _video_inputs():
    from vj.video.frames import VideoError
    from vj.video.sources.cameras import list_cameras
    from vj.video.sources.ndi import list_ndi_sources

    lines = []
    try:
        found = list_cameras()
        lines += ["cameras: none"] if not found else ["cameras (--video-in camera:N or camera:NAME):"]
        lines += [f"  {c.index}: '{c.name}' ({c.device})" for c in found]
    except VideoError as exc:
        lines.append(f"cameras: {exc}")
    try:
        names = list_ndi_sources(1.0)
        lines += ["NDI sources: none found"] if not names else ["NDI sources (--video-in ndi:NAME):"]
        lines += [f"  '{n}'" for n in names]
    except VideoError as exc:
        lines.append(f"NDI sources: {exc}")
    return lines


def report():
    """The lines `vj devices` prints."""
    return "\n".join(_engine() + _audio() + _midi() + _displays() + _video_inputs())

"""`--out TARGET`: what each target text means, refusing a bad one before the show starts (`check_target`), and
making its output (`open_output`)."""

from vj.config.video_keys import OUTPUT_PREFIXES, OUTPUT_SCHEMES, VIRTUAL_CAMERA, scheme_of
from vj.video.frames import OutputError

FORMS = "srt://HOST:PORT, udp://HOST:PORT, ndi:NAME, virtualcam, spout:NAME (Windows) or syphon:NAME (macOS)"


def _named(text):
    """(prefix, name) of ndi:NAME, spout:NAME, syphon:NAME (prefix in lower case), or (None, None)."""
    for prefix in OUTPUT_PREFIXES:
        if text[: len(prefix)].lower() == prefix:
            return prefix, text[len(prefix) :]
    return None, None


def check_target(text):
    """None for a target this machine can send to, else one line saying what is wrong and what would do."""
    from vj.video.outputs.ndi import check_ndi
    from vj.video.outputs.spout import check_spout
    from vj.video.outputs.stream import check_stream
    from vj.video.outputs.syphon import check_syphon
    from vj.video.outputs.virtual_camera import check_virtual_camera

    text = (text or "").strip()
    if not text:
        return f"--out needs a target: {FORMS}"
    scheme = scheme_of(text)
    if scheme is not None:
        if scheme in OUTPUT_SCHEMES:
            return check_stream(text)
        return f"{text}: {scheme}:// is no output; use {FORMS}"
    if text.lower() == VIRTUAL_CAMERA:
        return check_virtual_camera()
    prefix, name = _named(text)
    checks = {"ndi:": check_ndi, "spout:": check_spout, "syphon:": check_syphon}
    if prefix in checks:
        return checks[prefix](name)
    return f"{text}: not an output; use {FORMS}"


def open_output(target, width, height, fps, **kw):
    """The FrameOutput for `target`, its thread started, for frames of width x height at fps; OutputError (one
    line) when the target is refused. Keyword arguments go to the output (retry_pause, a virtual camera's
    backend and device)."""
    problem = check_target(target)
    if problem:
        raise OutputError(problem)
    target = target.strip()
    if scheme_of(target) in OUTPUT_SCHEMES:
        from vj.video.outputs.stream import stream_class

        cls = stream_class(target)
    elif target.lower() == VIRTUAL_CAMERA:
        from vj.video.outputs.virtual_camera import VirtualCameraOutput as cls
    else:
        prefix, _ = _named(target)
        if prefix == "ndi:":
            from vj.video.outputs.ndi import NdiOutput as cls
        elif prefix == "spout:":
            from vj.video.outputs.spout import SpoutOutput as cls
        else:
            from vj.video.outputs.syphon import SyphonOutput as cls
    return cls(target, width, height, fps, **kw)

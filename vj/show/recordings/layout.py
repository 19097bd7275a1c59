"""The names of a recording folder (`vj live --record DIR`), defined once for its writer and its readers.

A recording is a folder:

    recording.json    {"format", "version", "vj_version", "started" (ISO UTC), "sample_rate", "fps", the caller's
                      info...}; rewritten whole (write + rename) to add "audio_start" when known and "ended" at close
    events.jsonl      one JSON object per line, in the order they happened
    frames.jsonl      one JSON object per rendered frame
    presets/0003.yaml the preset file's text of each version
    audio/            the analysed audio as closed FLAC files of AUDIO_CHUNK_SECONDS each, named by their first sample
                      (audio/000000096000.flac); sample 0 sounded at show time "audio_start"
    show.mp4          the frames as shown (H.264) with the audio (AAC), made at close; its timestamps are show time:
                      frame n at n / fps holds the newest frame shown at or before it, the audio from "audio_start"
    show.video.mp4    the same frames while the show runs (fragmented MP4, no audio; playable after a kill once its
                      first fragment, ~2 s, is written); removed once show.mp4 is made

Why the audio is chunked: a FLAC file that is never closed (the show killed) cannot be read back by soundfile (its
header says 0 frames and reading fails), so each chunk is written whole and renamed into place: a killed show loses
at most the unfinished chunk. A killed show's lines are whole up to a possibly partial last one (read_lines drops it).
This module imports no heavy module: numpy and soundfile are imported by the functions that read audio.
"""

import json
import logging
import re
from pathlib import Path

from vj.errors import VjError

FORMAT = "vj-recording"
VERSION = 1
INFO = "recording.json"
EVENTS = "events.jsonl"
FRAMES = "frames.jsonl"
PRESETS = "presets"
AUDIO = "audio"
SHOW = "show.mp4"
SHOW_VIDEO = "show.video.mp4"
AUDIO_CHUNK_SECONDS = 2.0
AUDIO_SUBTYPE = "PCM_24"
PARTIAL = ".part"

_CHUNK = re.compile(r"^(\d+)\.flac$")
log = logging.getLogger(__name__)


class RecordingError(VjError):
    """A recording folder that cannot be written or read; the message is one line naming the folder."""


def check_new_folder(folder, label="recording folder"):
    """Refuse, in one line, a recording folder that exists as a file or holds anything (a recording is never
    mixed into other files); `label` names it as the user gave it (`--record`)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RecordingError(f"{label} {folder} is a file: give a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise RecordingError(f"{label} {folder} is not empty: give a new folder")


def preset_name(version):
    """The path, inside the folder, of the preset file's text at `version`: presets/0003.yaml."""
    return f"{PRESETS}/{int(version):04d}.yaml"


def audio_chunk_name(first_sample):
    """The path, inside the folder, of the audio chunk starting at sample `first_sample`: audio/000000096000.flac."""
    return f"{AUDIO}/{int(first_sample):012d}.flac"


def read_info(folder):
    """recording.json as a dict, refused in one line when the folder is not a vj recording this vj can read."""
    path = Path(folder) / INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordingError(f"{folder} is not a vj recording (it has no {INFO})") from None
    except (OSError, ValueError) as e:
        raise RecordingError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise RecordingError(f"{folder} is not a vj recording ({INFO} is not format {FORMAT!r})")
    if not isinstance(info.get("version"), int) or info["version"] > VERSION:
        raise RecordingError(
            f"{folder} was recorded by a newer vj (recording version {info.get('version')}; this vj reads {VERSION})"
        )
    return info


def read_lines(folder, name):
    """The JSON objects of `name` (EVENTS or FRAMES) in order; a partial last line (a killed show) is dropped."""
    path = Path(folder) / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # no newline after it: the line a kill cut short
                break
            raise RecordingError(f"{path} line {number} is not JSON") from None
    return records


def audio_chunks(folder):
    """[(first sample, path)] of the audio chunks, in order; unfinished (.part) files are not chunks."""
    root = Path(folder) / AUDIO
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), path) for path in root.iterdir() if (m := _CHUNK.match(path.name))]
    return sorted(found)


def iter_audio(folder):
    """Yield (first sample, float32 mono samples) chunk by chunk, stopping before a chunk that cannot be read."""
    import soundfile

    for first, path in audio_chunks(folder):
        try:
            samples, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (OSError, RuntimeError, soundfile.LibsndfileError) as e:
            log.warning("recording audio ends before %s: %s", path, e)
            return
        yield first, samples[:, 0]


def read_audio(folder):
    """(float32 mono samples, sample rate) of the recording's audio, gaps filled with silence.

    Samples were held to 24 bits by the writer (FLAC has no floats): 16- and 24-bit sources come back exactly.
    """
    import numpy as np

    rate = int(read_info(folder)["sample_rate"])
    parts, end = [], 0
    for first, samples in iter_audio(folder):
        if first > end:
            parts.append(np.zeros(first - end, np.float32))
        elif first < end:
            samples = samples[end - first :]
        parts.append(samples)
        end = max(end, first + len(samples))
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), rate

"""MIDI bindings learned during shows, kept beside the preset: `show.yaml` -> `show.midi.yaml`.

A learned CC binding replaces any binding of the same control or the same (channel, cc). The file is read leniently
(a show must start even with a damaged file) and written atomically.
"""

import os
from pathlib import Path

import yaml

from vj.config.live_keys import CC_FIELDS, CCBinding


def learned_path(preset_path):
    """Where the bindings learned for a preset live: `show.yaml` -> `show.midi.yaml` beside it."""
    preset_path = Path(preset_path)
    return preset_path.with_name(f"{preset_path.stem}.midi.yaml")


def add_binding(bindings, binding):
    """`bindings` with `binding` added, replacing any binding of the same control or the same (channel, cc)."""
    kept = [b for b in bindings if b.control != binding.control and (b.channel, b.cc) != (binding.channel, binding.cc)]
    return (*kept, binding)


def _cc_binding(item):
    """A CCBinding from one item of a learned file, or ValueError naming what is wrong."""
    if not isinstance(item, dict):
        raise ValueError("expected a mapping like {channel: 1, cc: 21, control: zoom}")
    for name in item:
        if name not in CC_FIELDS:
            raise ValueError(f"unknown key '{name}'; valid keys: {', '.join(CC_FIELDS)}")
    values = {}
    for name, spec in CC_FIELDS.items():
        if name not in item:
            if spec.required:
                raise ValueError(f"{name}: required key is missing")
            values[name] = spec.typed_default()
            continue
        try:
            values[name] = spec.check.convert(item[name])
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return CCBinding(**values)


def load_learned(path, control_names):
    """(bindings, warnings) from a learned file; a missing file is no bindings, and anything unusable in it is a
    warning (a show must start even with a damaged file), as is a binding of a control the preset no longer has."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return (), []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (), [f"{path}: cannot read learned MIDI bindings ({reason}); ignored"]
    if data is None:
        return (), []
    items = data.get("cc", []) if isinstance(data, dict) else None
    if not isinstance(items, list):
        return (), [
            f"{path}: expected `cc: [{{channel: 1, cc: 21, control: zoom}}, ...]`; learned MIDI bindings ignored"
        ]
    bindings, warnings = (), []
    for i, item in enumerate(items):
        try:
            binding = _cc_binding(item)
        except ValueError as exc:
            warnings.append(f"{path}: cc[{i}]: {exc}; ignored")
            continue
        if binding.control not in control_names:
            warnings.append(f"{path}: cc[{i}]: control '{binding.control}' is not in the preset; ignored")
            continue
        bindings = add_binding(bindings, binding)
    return bindings, warnings


def save_learned(path, bindings):
    """Write learned CC bindings as YAML; atomically, so a show stopped mid-write keeps the previous file."""
    path = Path(path)
    data = {"cc": [{"channel": b.channel, "cc": b.cc, "control": b.control} for b in bindings]}
    text = (
        "# MIDI bindings learned in `vj live`; they replace the preset's midi.cc bindings of the same control or "
        "the same\n# channel and cc. Edit or delete freely.\n"
        + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

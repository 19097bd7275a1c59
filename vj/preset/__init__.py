"""Presets: YAML files validated once at load against one typed schema."""

from vj.preset.schema import Preset, PresetError, load_preset

__all__ = ["Preset", "PresetError", "load_preset"]

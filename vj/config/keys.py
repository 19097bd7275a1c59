"""One definition per configuration key, shared by presets and the audio `Band`.

A dataclass field made with `key(check, default, meaning, area)` is the whole definition of a key: `check` converts
and validates a raw YAML value (raising ValueError with a one-line message) and knows its JSON-Schema fragment
and how README describes its valid values; `default` is written as in YAML (REQUIRED if the key must be
given); `meaning` is one line of markdown; `area` names the group of keys it belongs to (a preset's areas:
vj.config.schema.AREAS). Validation, the typed dataclass, README's key tables and the JSON Schema for editors
all read this one definition, so they cannot drift apart. This module imports nothing of the preset schema, so
the filter keys (vj.config.bands) and the live keys (vj.config.live_keys) are defined with it too.
"""

import json
import keyword
import math
import re
from dataclasses import dataclass, field, fields
from typing import Callable

from vj.language.expressions.compiler import did_you_mean
from vj.language.expressions.functions import RESERVED_NAMES


class _Required:
    """The default of a key that must be given."""

    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()
_METADATA = "vj.key"


@dataclass(frozen=True, eq=False)
class Check:
    """How a key's value is validated and described.

    `convert(value)` returns the typed value or raises ValueError with the message; `schema` is its JSON Schema
    (draft-07) fragment; `doc` says in markdown what is valid. A `late` check is converted by its user once more
    is known: `convert(value, variables)` for expressions, which need the preset's variable names.
    """

    convert: Callable
    schema: dict
    doc: str
    late: bool = False


@dataclass(frozen=True)
class Key:
    """A key's single definition: its Check, its default as written in YAML (or REQUIRED), its meaning, and the
    area (group of keys) of its dataclass it belongs to, if that dataclass has areas."""

    check: Check
    default: object
    meaning: str
    area: str | None = None

    @property
    def required(self):
        return self.default is REQUIRED

    def typed_default(self):
        """The value the key has when it is not given (None for a required key)."""
        return None if self.required else self.check.convert(self.default)


def key(check, default, meaning, area=None):
    """A dataclass field that is a configuration key, with its whole definition in the field's metadata."""
    spec = Key(check, default, meaning, area)
    if spec.required:
        return field(metadata={_METADATA: spec})
    return field(default=spec.typed_default(), metadata={_METADATA: spec})


def keys(cls):
    """{name: Key} of the key fields of dataclass `cls`, in declaration order."""
    return {f.name: f.metadata[_METADATA] for f in fields(cls) if _METADATA in f.metadata}


# --- checks -------------------------------------------------------------------------------------------------


def number(value, integer=False):
    """`value` as a float (or int), or ValueError: booleans, text and non-finite numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected {'an integer' if integer else 'a number'}, got {value!r}")
    if integer and not float(value).is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return int(value) if integer else float(value)


def _positive(value):
    value = number(value)
    if value <= 0:
        raise ValueError(f"must be > 0, got {value:g}")
    return value


def _non_negative(value):
    value = number(value)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value:g}")
    return value


def _text(value):
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _positive_integer(value):
    value = number(value, integer=True)
    if value < 1:
        raise ValueError(f"must be an integer >= 1, got {value}")
    return value


NUMBER = Check(number, {"type": "number"}, "number")
POSITIVE = Check(_positive, {"type": "number", "exclusiveMinimum": 0}, "number > 0")
POSITIVE_INTEGER = Check(_positive_integer, {"type": "integer", "minimum": 1}, "integer ≥ 1")
NON_NEGATIVE = Check(_non_negative, {"type": "number", "minimum": 0}, "number ≥ 0")
TEXT = Check(_text, {"type": "string"}, "text")
PATH = Check(_text, {"type": "string"}, "file path")
BOOLEAN = Check(_boolean, {"type": "boolean"}, "`true` or `false`")


def in_range(lo, hi, integer=False):
    """A number (or integer) in lo..hi."""

    def convert(value):
        value = number(value, integer)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value:g}")
        return value

    kind = "integer" if integer else "number"
    return Check(convert, {"type": kind, "minimum": lo, "maximum": hi}, f"{kind} {lo}..{hi}")


def choice(*choices):
    """One of the given words."""

    def convert(value):
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}{did_you_mean(str(value), choices)}")
        return value

    return Check(convert, {"type": "string", "enum": list(choices)}, ", ".join(f"`{c}`" for c in choices))


def or_auto(check):
    """`check`'s values or the word `auto` (a default that vj works out, e.g. from a band's frequencies)."""

    def convert(value):
        if isinstance(value, str) and value != "auto":
            raise ValueError(f"expected {_plain(check.doc)} or auto, got {value!r}")
        return "auto" if value == "auto" else check.convert(value)

    return Check(
        convert, {"anyOf": [dict(check.schema), {"type": "string", "enum": ["auto"]}]}, f"{check.doc} or `auto`"
    )


def optional(check):
    """`check`'s values or null (None)."""

    def convert(value):
        return None if value is None else check.convert(value)

    schema = dict(check.schema)
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    schema["type"] = [*types, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return Check(convert, schema, f"{check.doc} or `null`")


def ordered_pair(lo=None, hi=None):
    """A list of two numbers [min, max] with min < max, inside lo..hi when those are given."""
    item = NUMBER if lo is None else in_range(lo, hi)

    def convert(value):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"expected a list of two numbers [min, max], got {value!r}")
        low, high = (item.convert(v) for v in value)
        if low >= high:
            raise ValueError(f"min {low:g} must be less than max {high:g}")
        return (low, high)

    schema = {"type": "array", "items": item.schema, "minItems": 2, "maxItems": 2}
    bounds = "min < max" if lo is None else f"{lo} ≤ min < max ≤ {hi}"
    return Check(convert, schema, f"[min, max] with {bounds}")


def list_of(cls, doc, example):
    """A list of mappings with the keys of dataclass `cls`. Only the list is checked here: its user checks the
    items one by one with their lines, so the list is returned as read (a LineList keeps its lines)."""

    def convert(value):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list of {example}")
        return value

    return Check(convert, {"type": "array", "items": object_schema(cls)}, doc)


def mapping_of(cls, doc, example):
    """A mapping with the keys of dataclass `cls`; like `list_of`, its user checks the keys with their lines."""

    def convert(value):
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping like {example}")
        return value

    return Check(convert, object_schema(cls), doc)


_NAME = r"(?!__)[A-Za-z_][A-Za-z0-9_]*"


def variable_name(*reserved):
    """A name usable in expressions: ASCII letters, digits and _, not a keyword, not t, frame, a function or a
    constant, nor any of `reserved`, given as (names, what they are) pairs."""
    groups = ((RESERVED_NAMES, "t, frame, functions and constants"), *reserved)

    def convert(value):
        value = _text(value)
        if not re.fullmatch(_NAME, value) or keyword.iskeyword(value):
            raise ValueError(
                f"'{value}' is not a valid name (ASCII letters, digits and _, not starting with a digit or __)"
            )
        for names, what in groups:
            if value in names:
                raise ValueError(f"'{value}' is reserved ({what}); choose another name")
        return value

    taken = sorted(set(keyword.kwlist).union(*(names for names, _ in groups)))
    schema = {"type": "string", "pattern": f"^{_NAME}$", "not": {"enum": taken}}
    return Check(convert, schema, "name (letters, digits, `_`)")


# --- documents generated from the definitions --------------------------------------------------------------


def _plain(markdown):
    return re.sub(r"[`*]", "", markdown)


def _yaml_text(value):
    """A default as a preset would write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)


def object_schema(cls):
    """The JSON Schema (draft-07) of a mapping whose keys are those of dataclass `cls`."""
    properties, required = {}, []
    for name, spec in keys(cls).items():
        default = "Required." if spec.required else f"Default: `{_yaml_text(spec.default)}`."
        text = f"{spec.meaning}.\n\nValid: {spec.check.doc}. {default}"
        prop = {"description": _plain(text).replace("\n\n", " "), "markdownDescription": text, **spec.check.schema}
        if spec.required:
            required.append(name)
        else:
            prop["default"] = json.loads(json.dumps(spec.default))
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def markdown_table(cls, area=None):
    """README's table of the keys of dataclass `cls` (those of `area` only, if given): key, default, valid values,
    meaning."""

    def cell(text):
        return text.replace("|", "\\|")

    rows = ["| key | default | valid | meaning |", "| --- | --- | --- | --- |"]
    for name, spec in keys(cls).items():
        if area is not None and spec.area != area:
            continue
        default = "required" if spec.required else "—" if spec.default is None else f"`{_yaml_text(spec.default)}`"
        rows.append(f"| `{name}` | {cell(default)} | {cell(spec.check.doc)} | {cell(spec.meaning)} |")
    return "\n".join(rows) + "\n"

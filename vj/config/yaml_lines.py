"""Load YAML keeping the line of every mapping key and list item, and rejecting duplicate keys."""

import yaml


class LineDict(dict):
    """A mapping that remembers the 1-based line of each key (`lines`) and of itself (`line`)."""

    lines: dict
    line: int


class LineList(list):
    """A list that remembers the 1-based line of each item (`lines`)."""

    lines: list
    line: int


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key, line, first):
        super().__init__(f"duplicate key '{key}' at line {line} (first at line {first})")
        self.line = line


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader, node):
    loader.flatten_mapping(node)
    out = LineDict()
    out.lines, out.line = {}, node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in out.lines:
            raise DuplicateKeyError(key, line, out.lines[key])
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _sequence(loader, node):
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.lines, out.line = [child.start_mark.line + 1 for child in node.value], node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text):
    """Parse YAML text into plain values with LineDict/LineList containers."""
    return yaml.load(text, Loader=_Loader)

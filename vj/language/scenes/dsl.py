"""Parse pytti scene strings: `||` between scenes, `|` between prompts, `TEXT:WEIGHT:STOP`.

Differences from pytti (its presets keep working): `\\|`, `\\:` and `\\\\` escape, a double-quoted
TEXT is literal (`"ratio 16:9 photo":2`), `_` inside a variable name such as `fLo_prev` is part of
the name, and an empty weight or stop is an error instead of a crash.
"""

import math
import re
from dataclasses import dataclass

from vj.language.expressions import Expression, ExpressionError, compile_expression, constant
from vj.language.scenes.edits import EditSyntaxError, parse_edits
from vj.language.value_ranges import out_of_range

DIRECTION_MASKS = {"a": "all", "r": "right", "l": "left", "d": "down", "u": "up", "n": "near", "f": "far"}


class SceneError(ValueError):
    """A scene string that cannot be parsed; `problems` has one message per bad prompt."""

    def __init__(self, *problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Mask:
    """Where a prompt applies: kind is 'image' (a file), 'direction' (a r l d u: halves of the frame; n f: large or
    small cutouts) or 'semantic' (a phrase CLIP scores on each cutout).
    `cutoff` is pytti's number after a second `_`."""

    kind: str
    value: str
    inverted: bool = False
    cutoff: float | None = None


@dataclass(frozen=True)
class Prompt:
    """One prompt of a scene: text (or an image path), weight and stop expressions, optional mask."""

    text: str
    weight: Expression
    stop: Expression
    mask: Mask | None = None
    is_image: bool = False
    source: str = ""
    edits: object = None  # edits.PromptEdits of a text with brace groups `{cat + 0.4*tabby}`, else None

    @property
    def path(self):
        """The image path of an image prompt `[path]`."""
        return self.text[1:-1].strip() if self.is_image else None


@dataclass(frozen=True)
class Scene:
    index: int
    prompts: tuple
    source: str


_NO_STOP = constant(-math.inf)
_ONE = constant(1.0)


def _scan(text):
    """Yield (position, char, literal) for text chars and (position, separator, None) for `||`, `|`, `:`.

    Escaped characters and double-quoted runs are literal; `[...]` protects `:` and `|` inside it.
    """
    i, depth, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            yield i, text[i + 1], True
            i += 2
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                yield j, text[j], True
                j += 1
            if j >= n:
                raise SceneError(f"unclosed '\"' at character {i + 1} of '{text}'")
            i = j + 1
        elif c == "[":
            depth += 1
            yield i, c, False
            i += 1
        elif c == "]" and depth:
            depth -= 1
            yield i, c, False
            i += 1
        elif depth == 0 and c == "|":
            if i + 1 < n and text[i + 1] == "|":
                yield i, "||", None
                i += 2
            else:
                yield i, "|", None
                i += 1
        elif depth == 0 and c == ":":
            yield i, ":", None
            i += 1
        else:
            yield i, c, False
            i += 1
    if depth:
        raise SceneError(f"unclosed '[' in '{text}'")


def split_scenes(text):
    """Raw scene texts (escapes kept) between unescaped `||`."""
    pieces, start = [], 0
    for pos, item, literal in _scan(text):
        if literal is None and item == "||":
            pieces.append(text[start:pos])
            start = pos + 2
    pieces.append(text[start:])
    return pieces


_URL_HEAD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/|]*")  # scheme and host (a :port included)
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")  # C:/ or C:\


def _bracket_path(piece):
    """One prompt of pytti's `path:WEIGHT:STOP` with its path in brackets; a bracketed or quoted one is kept."""
    body = piece.strip()
    if not body or body.startswith(("[", '"')):
        return piece
    head = _URL_HEAD.match(body) or _DRIVE.match(body)
    start = head.end() if head else 0
    end = body.find(":", start)
    end = len(body) if end < 0 else end
    return f"[{body[:end].strip()}]{body[end:]}"


def bracket_image_paths(text):
    """`direct_image_prompts` in pytti's form (`images/ref.jpg:0.5 | https://example.com/a.png:1`, a path
    without brackets, a URL's `://` and :port not splitting) rewritten in vj's (`[images/ref.jpg]:0.5 | ...`);
    prompts already written `[path]:WEIGHT` are kept."""
    pieces, start = [], 0
    for pos, item, literal in _scan(text):
        if literal is None and item in ("|", "||"):
            pieces.append(_bracket_path(text[start:pos]) + item)
            start = pos + len(item)
    pieces.append(_bracket_path(text[start:]))
    return "".join(pieces)


def _fields(scene_text):
    """Prompts of one scene, each a list of fields, each a list of (char, literal)."""
    prompts = [[[]]]
    for _, item, literal in _scan(scene_text):
        if literal is None and item == "||":
            raise SceneError(f"'||' inside a scene: '{scene_text}'")
        if literal is None and item == "|":
            prompts.append([[]])
        elif literal is None and item == ":":
            prompts[-1].append([])
        else:
            prompts[-1][-1].append((item, literal))
    return prompts


def _text(chars):
    return "".join(c for c, _ in chars).strip()


def _is_image(chars):
    chars = [(c, lit) for c, lit in chars if not (c.isspace() and not lit)]
    return len(chars) >= 2 and chars[0] == ("[", False) and chars[-1] == ("]", False)


def _mask(text):
    inverted = text.startswith("-[")
    body = text[1:] if inverted else text
    cutoff = None
    head, sep, tail = body.rpartition("_")
    if sep and not body.endswith("]"):
        try:
            cutoff = float(tail)
            body = head.strip()
        except ValueError:
            pass
    if not body.strip():
        raise ExpressionError(f"mask '{text}' is empty: write a phrase, [mask.png] or a letter a r l d u n f")
    if body.startswith("[") and body.endswith("]"):
        return Mask("image", body[1:-1].strip(), inverted, cutoff)
    if inverted:
        raise ExpressionError(f"mask '{text}': '-' inverts image masks only, like -[mask.png]")
    if body in DIRECTION_MASKS:
        return Mask("direction", DIRECTION_MASKS[body], False, cutoff)
    return Mask("semantic", body, False, cutoff)


def _weight_and_mask(text, variables):
    """Split `WEIGHT[_MASK]`: the whole text is the weight if it compiles (so `fLo_prev` works);
    otherwise the mask starts at the first `_` whose left side compiles."""
    try:
        return compile_expression(text, variables), None
    except ExpressionError as whole_error:
        for i, c in enumerate(text):
            if c == "_" and i > 0:
                try:
                    weight = compile_expression(text[:i], variables)
                except ExpressionError:
                    continue
                return weight, _mask(text[i + 1 :].strip())
        raise whole_error


def _prompt(fields, variables, scene_no):
    text = _text(fields[0])
    label = f"scene {scene_no}, prompt '{text or ':'.join(_text(f) for f in fields)}'"
    if not text:
        raise SceneError(f"{label}: empty prompt text before ':'")
    if len(fields) > 3:
        raise SceneError(
            f"{label}: too many ':' (a prompt is TEXT:WEIGHT:STOP); "
            "to put ':' in the text write \\: or quote the text, like \"16:9 photo\":1"
        )
    is_image = _is_image(fields[0])
    try:  # brace groups first: a ':' inside a group splits the prompt, and this error says so
        edits = None if is_image else parse_edits(text, variables)
    except EditSyntaxError as exc:
        raise SceneError(f"{label}: {exc}") from None
    weight, stop, mask = _ONE, _NO_STOP, None
    try:
        if len(fields) >= 2:
            wtext = _text(fields[1])
            if not wtext:
                raise SceneError(
                    f"{label}: empty weight after ':'; write a number or an expression, like {text}:1 or {text}:fLo"
                )
            weight, mask = _weight_and_mask(wtext, variables)
        if len(fields) == 3:
            stext = _text(fields[2])
            if not stext:
                raise SceneError(f"{label}: empty stop after the second ':'; write a number like -0.5 or leave it out")
            stop = compile_expression(stext, variables)
    except ExpressionError as exc:
        hint = " (to put ':' in the text write \\: or quote the text)" if "invalid syntax" in str(exc) else ""
        raise SceneError(f"{label}: {exc}{hint}") from None
    reason = out_of_range("weight", weight(None)) if weight.is_constant else None
    if reason:
        raise SceneError(f"{label}: weight {reason}")
    source = ":".join(_text(f) for f in fields)
    return Prompt(text=text, weight=weight, stop=stop, mask=mask, is_image=is_image, source=source, edits=edits)


def parse_scenes(text, variables, prefix="", suffix=""):
    """Parse a pytti scene string into Scenes; raise SceneError naming the scene and prompt."""
    scenes, problems, number = [], [], 0
    for raw in split_scenes(text or ""):
        if not raw.strip():
            continue
        number += 1
        prompts = []
        for fields in _fields(prefix + raw + suffix):
            if len(fields) == 1 and not _text(fields[0]):
                continue
            try:
                prompts.append(_prompt(fields, variables, number))
            except SceneError as exc:
                problems.extend(exc.problems)
        if prompts:
            scenes.append(Scene(index=len(scenes), prompts=tuple(prompts), source=raw.strip()))
    if problems:
        raise SceneError(*problems)
    if not scenes:
        raise SceneError("no scenes: write at least one prompt, like 'a forest at dawn'")
    return scenes

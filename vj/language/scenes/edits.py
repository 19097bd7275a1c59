"""Token-level prompt arithmetic in scene prompts: `a photo of a {cat + 0.4*tabby - 0.2*knob*kitten} on a sofa`.

The preset's side of brace groups: a prompt's groups are parsed once at load, their coefficients compiled as
expressions of the preset's variables (like weights); each frame `PromptEdits.text(env)` gives the engine the
canonical numeric text, `a photo of a {1.0*cat + 0.4*tabby + -0.08*kitten} on a sofa`, which
vj/engine/diffusion/prompt_edits.py turns into an edited conditioning (the grammar and the token rule are described
there and in README, "Token-level prompt arithmetic").
"""

from dataclasses import dataclass

from vj.engine.diffusion.prompt_edits import (
    EditSyntaxError,
    format_text,
    has_groups,
    split_groups,
    split_terms,
    substitute,
)
from vj.language.expressions import Expression, ExpressionError, compile_expression, constant
from vj.language.value_ranges import UNREPORTED, out_of_range

__all__ = ["EditSyntaxError", "PromptEdits", "Term", "parse_edits", "plain_prompt_text", "prompt_text", "scene_prompts"]

_ONE = constant(1.0)
_SPLIT_HINT = (
    " (a ':' or '|' inside braces ends the prompt's text there: write \\: or \\|, or quote the text, "
    'like "{cat + 0.5*dog}":1)'
)


@dataclass(frozen=True)
class Term:
    """One term of a group: sign * coefficient(env) times the embedding of `words` in the group's slot."""

    sign: float
    coefficient: Expression
    words: str

    def value(self, env):
        return self.sign * self.coefficient(env)


@dataclass(frozen=True)
class PromptEdits:
    """A prompt text's brace groups: `pieces` between them, `groups` of Terms."""

    pieces: tuple
    groups: tuple

    @property
    def plain(self):
        """The plain sentence: each group's first term's words in its slot."""
        return substitute(self.pieces, [g[0].words for g in self.groups])

    def text(self, env, hold=None):
        """The canonical numeric text of the frame with variables `env` (floats written with repr); `hold` (a
        vj.language.value_ranges.ValueGuard) keeps each coefficient in its range."""
        hold = hold or UNREPORTED
        return format_text(
            self.pieces,
            [[(hold("coefficient", f"'{t.words}'", t.value(env)), t.words) for t in g] for g in self.groups],
        )


def parse_edits(text, variables):
    """The PromptEdits of a prompt text, or None when it has no braces; EditSyntaxError (a ValueError) with one
    line saying what is wrong and what would be valid."""
    if not has_groups(text):
        return None
    try:
        pieces, bodies = split_groups(text)
    except EditSyntaxError as exc:
        raise EditSyntaxError(f"{exc}{_SPLIT_HINT}") from None
    groups = []
    for body in bodies:
        terms = []
        for sign, coefficient, words in split_terms(body):
            if coefficient is None:
                expr = _ONE
            else:
                try:
                    expr = compile_expression(coefficient, variables)
                except ExpressionError as exc:
                    hint = (
                        " (a coefficient with + or - needs parentheses, like (0.5 + fLo)*dog)"
                        if ("invalid syntax" in str(exc))
                        else ""
                    )
                    raise EditSyntaxError(f"coefficient of '{words}' in '{{{body.strip()}}}': {exc}{hint}") from None
            term = Term(float(sign), expr, words)
            reason = out_of_range("coefficient", term.value(None)) if expr.is_constant else None
            if reason:
                raise EditSyntaxError(f"coefficient of '{words}' in '{{{body.strip()}}}': {reason}")
            terms.append(term)
        groups.append(tuple(terms))
    return PromptEdits(tuple(pieces), tuple(groups))


def plain_prompt_text(prompt):
    """A scene prompt's plain sentence (each group replaced by its first term's words): for CLIP guidance text
    targets and anything else that needs a sentence."""
    edits = getattr(prompt, "edits", None)
    return prompt.text if edits is None else edits.plain


def prompt_text(prompt, env, hold=None):
    """The text the engine gets for a scene prompt in `env`: the canonical numeric text where it has groups."""
    edits = getattr(prompt, "edits", None)
    return prompt.text if edits is None else edits.text(env, hold)


def scene_prompts(scene, env, hold):
    """A scene's (text, weight) prompts for the engine in `env`, every number held in its range by `hold` (image
    prompts act through CLIP guidance only)."""
    return tuple(
        (prompt_text(p, env, hold), hold("weight", f"'{plain_prompt_text(p)}'", p.weight(env)))
        for p in scene.prompts
        if not p.is_image
    )

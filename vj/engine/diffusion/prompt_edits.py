"""Token-level prompt arithmetic: `a photo of a {1.0*cat + 0.4*tabby + -0.2*kitten} on a sofa`.

The engine's side of brace groups. It gets texts whose coefficients are already numbers (the Director
evaluates the preset's expressions each frame) and computes their conditioning from embeddings of plain
sentences, which the ConditioningCache keeps:

- the BASE sentence puts each group's first term in its slot ("a photo of a cat on a sofa");
- for every term, the sentence with that group's slot holding the term's words (the other groups keep their
  first term) is embedded once, as a plain text;
- the slot's token positions come from the tokenizer: CLIP's BPE splits at whitespace, so the slot starts after
  BOS and the prefix's tokens; this is checked against the sentence's token ids, with a search as fallback;
- the edited conditioning is the base sentence's embedding where, at each slot's positions, it is
  sum_j c_j * (term j's embedding at its own slot positions). BOS (position 0) and every other position are
  the base sentence's, bit for bit; coefficients are not normalized (`{cat + 0*tabby}` is exactly "cat").
- Token counts: the slot is as long as the first term's n0 tokens. A term of n_j tokens is resampled to n0
  by linear interpolation along the token axis, end-aligned: target i in 0..n0-1 reads the term at position
  (i + 1) * n_j / n0 - 1 (clamped to 0..n_j-1), so equal counts copy token for token, a one-token term
  broadcasts, and a one-token slot takes a longer term's last token (in CLIP's causal encoder the last token
  of a word has seen the whole word).
- The 77-token window: slot positions at or past the sentence's EOS position (truncated sentences end in EOS
  at 76) are dropped; a term cut by the window uses the tokens it has.

Parsing is shared with the preset side (`vj/language/scenes/edits.py` compiles the coefficients as expressions).
Inside a group, terms are separated by `+` and `-` outside parentheses, except a sign at the start of a term
(`+ -0.2*kitten`), a `-` directly between two letters (`sci-fi` is one word) and a number's exponent sign
(`1e-05`). A term is `COEF*WORDS` (split at its last `*` outside parentheses) or `WORDS` (coefficient 1).
Braces are reserved: a prompt cannot hold a literal `{` or `}`. Texts without braces never come here.
"""

import re
from collections import OrderedDict
from dataclasses import dataclass

PLAN_CACHE = 256  # text structures (sentences, slot positions, term vectors) kept per ConditioningCache
RESULT_CACHE = 32  # edited conditionings kept (the same coefficients on consecutive frames cost nothing)

_EXPONENT = re.compile(r"(?:^|[^\w.])(?:\d+\.?\d*|\.\d+)[eE]$")


class EditSyntaxError(ValueError):
    """A brace group that cannot be parsed; the message says what is wrong and what would be valid."""


def has_groups(text):
    """Whether `text` uses brace groups (or holds a stray brace)."""
    return "{" in text or "}" in text


def split_groups(text):
    """(pieces, bodies): the text between groups and each group's body, len(pieces) == len(bodies) + 1."""
    pieces, bodies, start, open_at = [], [], 0, None
    for i, c in enumerate(text):
        if c == "{":
            if open_at is not None:
                raise EditSyntaxError(
                    f"'{{' inside a group at character {i + 1}: groups do not nest (write {{cat + 0.5*dog}})"
                )
            pieces.append(text[start:i])
            open_at = i
        elif c == "}":
            if open_at is None:
                raise EditSyntaxError(
                    f"'}}' at character {i + 1} closes no '{{' (a group is {{cat + 0.5*dog}}; "
                    "braces cannot be literal text)"
                )
            bodies.append(text[open_at + 1 : i])
            start, open_at = i + 1, None
    if open_at is not None:
        raise EditSyntaxError(
            f"'{{' at character {open_at + 1} is never closed (a group is {{cat + 0.5*dog}}; "
            "braces cannot be literal text)"
        )
    pieces.append(text[start:])
    return tuple(pieces), tuple(bodies)


def _separators(body):
    """Positions of the `+`/`-` that separate terms (see the module's docstring)."""
    found, depth, content = [], 0, False
    for i, c in enumerate(body):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise EditSyntaxError(f"')' at character {i + 1} of '{{{body}}}' closes no '('")
        elif c in "+-" and depth == 0 and content:
            before, after = body[i - 1], body[i + 1 : i + 2]
            hyphen = c == "-" and before.isalpha() and after.isalpha()
            exponent = after.isdigit() and _EXPONENT.search(body[:i]) is not None
            if not (hyphen or exponent):
                found.append(i)
                content = False
                continue
        if not c.isspace():
            content = True
    if depth > 0:
        raise EditSyntaxError(f"unclosed '(' in '{{{body}}}'")
    return found


def _last_star(term):
    depth, last = 0, -1
    for i, c in enumerate(term):
        depth += (c == "(") - (c == ")")
        if c == "*" and depth == 0:
            last = i
    return last


def split_terms(body):
    """The terms of a group body: tuples (sign, coefficient text or None, words)."""
    if not body.strip():
        raise EditSyntaxError("empty group '{}': write at least one term, like {cat} or {cat + 0.5*dog}")
    cuts = _separators(body)
    signs = [1] + [-1 if body[i] == "-" else 1 for i in cuts]
    parts = [body[a + (k > 0) : b] for k, (a, b) in enumerate(zip([0] + cuts, cuts + [len(body)]))]
    terms = []
    for sign, part in zip(signs, parts):
        text = part.strip()
        if not text:
            raise EditSyntaxError(
                f"empty term in '{{{body}}}': terms are WORDS or COEF*WORDS separated by + or -, "
                "like {cat + 0.4*tabby - 0.2*kitten}"
            )
        star = _last_star(text)
        if star < 0:
            while text[:1] in ("+", "-"):
                sign, text = (-sign if text[0] == "-" else sign), text[1:].strip()
            coefficient = None
        else:
            coefficient, text = text[:star].strip(), text[star + 1 :].strip()
            if not coefficient:
                raise EditSyntaxError(
                    f"term '{part.strip()}' has no coefficient before '*' (write COEF*WORDS, like 0.5*dog)"
                )
        if not text:
            raise EditSyntaxError(f"term '{part.strip()}' has no words (write WORDS or COEF*WORDS, like 0.5*dog)")
        terms.append((sign, coefficient, text))
    return tuple(terms)


def substitute(pieces, words):
    """The plain sentence with group g's slot holding words[g]."""
    out = [pieces[0]]
    for w, piece in zip(words, pieces[1:]):
        out += [w, piece]
    return "".join(out)


def format_text(pieces, groups):
    """The canonical numeric text the engine parses: groups are sequences of (coefficient, words); floats are
    written with repr, so they round-trip."""
    bodies = [" + ".join(f"{float(c)!r}*{w}" for c, w in group) for group in groups]
    return substitute(pieces, ["{" + b + "}" for b in bodies])


@dataclass(frozen=True)
class EditedText:
    """A numeric text with groups: pieces between groups, and per group its (coefficient, words) terms."""

    pieces: tuple
    groups: tuple

    @property
    def structure(self):
        """Everything but the coefficients (what the token positions and term sentences depend on)."""
        return self.pieces, tuple(tuple(w for _, w in g) for g in self.groups)


def parse_text(text):
    """An EditedText from a canonical numeric text; EditSyntaxError for bad groups or non-numeric coefficients."""
    pieces, bodies = split_groups(text)
    groups = []
    for body in bodies:
        terms = []
        for sign, coefficient, words in split_terms(body):
            try:
                value = 1.0 if coefficient is None else float(coefficient)
            except ValueError:
                raise EditSyntaxError(
                    f"coefficient '{coefficient}' in '{{{body}}}' is not a number: the engine gets "
                    "evaluated coefficients (vj.language.scenes.edits.prompt_text)"
                ) from None
            terms.append((sign * value, words))
        groups.append(tuple(terms))
    return EditedText(pieces, tuple(groups))


# ---- token positions ------------------------------------------------------------------------------------


def _tokens(tokenizer, text):
    """Token ids of `text` without BOS/EOS and without truncation."""
    return tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)) if text.strip() else []


def _find(haystack, needle, near):
    hits = [i for i in range(len(haystack) - len(needle) + 1) if haystack[i : i + len(needle)] == needle]
    return min(hits, key=lambda i: abs(i - near)) if hits else None


def slot_span(tokenizer, prefix, words, suffix):
    """(start, count, end) of `words`' tokens in the sentence prefix + words + suffix, positions counted with
    BOS at 0; `end` is the sentence's EOS position in the model's window (slot positions >= end do not exist)."""
    full = _tokens(tokenizer, prefix + words + suffix)
    before, own = _tokens(tokenizer, prefix), _tokens(tokenizer, words)
    window = getattr(tokenizer, "model_max_length", 77)
    end = min(len(full) + 2, window) - 1
    start = len(before)
    if not (full[:start] == before and full[start : start + len(own)] == own):
        found = _find(full, own, start) if own else None
        if found is not None:
            start = found
        else:  # the words merged with a neighbour: the tokens that differ from the prefix's and suffix's
            after = _tokens(tokenizer, suffix)
            start = 0
            while start < min(len(full), len(before)) and full[start] == before[start]:
                start += 1
            tail = 0
            while tail < min(len(full) - start, len(after)) and full[-1 - tail] == after[-1 - tail]:
                tail += 1
            own = full[start : len(full) - tail]
    return start + 1, len(own), end


def resample_positions(count, target):
    """End-aligned linear resampling of `count` tokens to `target`: (low, high, fraction) per target token."""
    out = []
    for i in range(target):
        x = min(max((i + 1) * count / target - 1, 0.0), count - 1)
        low = int(x)
        high = min(low + 1, count - 1)
        out.append((low, high, x - low))
    return out


# ---- the edited conditioning --------------------------------------------------------------------------


@dataclass
class _Group:
    start: int
    count: int  # target positions kept (the first term's tokens inside the window)
    vectors: list  # per term: (count, D) float32, resampled from the term sentence's slot


class PromptEditor:
    """Edited conditionings for one ConditioningCache; plain sentences are embedded (and kept) by the cache."""

    def __init__(self, cache):
        self.cache = cache
        self._plans = OrderedDict()  # structure -> (base embedding, [_Group])
        self._results = OrderedDict()  # canonical text -> edited embedding

    def embed(self, text):
        """The edited conditioning (1, L, D) of a canonical numeric text."""
        result = self._results.get(text)
        if result is not None:
            self._results.move_to_end(text)
            return result
        import torch

        edited = parse_text(text)
        with torch.inference_mode():
            base, groups = self._plan(edited)
            result = edit(base, groups, [[c for c, _ in g] for g in edited.groups])
        self._results[text] = result
        while len(self._results) > RESULT_CACHE:
            self._results.popitem(last=False)
        return result

    def _plan(self, edited):
        """(base embedding, [_Group]) of the text's structure: every sentence embedded (by the cache) and every
        term's slot vectors resampled once, so new coefficients cost no encoder call and no tokenizer call."""
        key = edited.structure
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        pieces, words = key
        first = [w[0] for w in words]
        base = self.cache.embed(substitute(pieces, first))
        groups = []
        for g, terms in enumerate(words):
            prefix = substitute(pieces[: g + 1], first[:g])
            suffix = substitute(pieces[g + 1 :], first[g + 1 :])
            start, n0, end = slot_span(self.cache.tokenizer, prefix, terms[0], suffix)
            count = max(0, min(n0, end - start))
            vectors = [self._term_vectors(prefix, term, suffix, n0, count) for term in terms]
            groups.append(_Group(start, count, vectors))
        plan = self._plans[key] = (base, groups)
        while len(self._plans) > PLAN_CACHE:
            self._plans.popitem(last=False)
        return plan

    def _term_vectors(self, prefix, term, suffix, n0, count):
        """(count, D) float32: the term sentence's slot vectors resampled to n0 tokens (the first `count` kept)."""
        import torch

        start, n, end = slot_span(self.cache.tokenizer, prefix, term, suffix)
        have = max(0, min(n, end - start))  # the term's tokens inside the window
        embedding = self.cache.embed(prefix + term + suffix)[0].float()
        if count == 0 or have == 0:
            return None
        source = embedding[start : start + have]
        if n == n0 == have:
            return source[:count].clone()
        idx = resample_positions(n, n0)[:count]
        low = torch.tensor([min(lo, have - 1) for lo, _, _ in idx], device=source.device)
        high = torch.tensor([min(hi, have - 1) for _, hi, _ in idx], device=source.device)
        frac = torch.tensor([f for _, _, f in idx], dtype=torch.float32, device=source.device)[:, None]
        return source[low] * (1 - frac) + source[high] * frac


def edit(base, groups, coefficients):
    """`base` (1, L, D) with each group's slot replaced by sum_j c_j * vectors_j (zero coefficients skipped)."""
    import torch

    out = base.clone()
    for group, cs in zip(groups, coefficients):
        if group.count == 0:
            continue
        total = None
        for c, vectors in zip(cs, group.vectors):
            if c != 0.0 and vectors is not None:
                total = vectors * c if total is None else total + vectors * c
        if total is None:
            total = torch.zeros_like(group.vectors[0])
        out[0, group.start : group.start + group.count] = total.to(out.dtype)
    return out

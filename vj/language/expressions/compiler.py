"""Compile an expression string once (AST whitelist), evaluate it many times without raising."""

import ast
import difflib
import logging
import math
import operator

from vj.language.expressions.functions import BUILTIN_VARIABLES, CONSTANTS, FUNCTIONS

log = logging.getLogger("vj.language.expressions")

MAX_CONSTANT_EXPONENT = 100.0
# Far beyond any sensible formula. The length bounds the time to check one (the scene parser compiles every
# prefix of a weight that ends before a '_'); Python's parser, compiler and our checks recurse per level.
MAX_LENGTH = 2000  # characters
MAX_DEPTH = 100  # levels of nested operators and calls
FALLBACK_VALUE = 0.0

_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_UNARY = (ast.UAdd, ast.USub, ast.Not)
_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_REJECTED = {
    ast.Attribute: "attribute access ('.') is not allowed",
    ast.Subscript: "subscripts ('[...]') are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.NamedExpr: "assignment (':=') is not allowed",
    ast.Starred: "'*' unpacking is not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.List: "lists are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Set: "sets are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
}
_ALLOWED_SUMMARY = "numbers, variable names, + - * / // % **, comparisons, and/or/not, 'a if c else b', function calls"
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
    ast.Not: operator.not_,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class ExpressionError(ValueError):
    """An expression that cannot be compiled; the message names the expression and the position."""


def did_you_mean(name, candidates):
    """' (did you mean 'x'?)' for the closest candidate, case-insensitively, or ''."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[match[0]]}'?)" if match else ""


class Expression:
    """A compiled expression: `expr(env)` returns a finite float and never raises.

    A division by zero, a math domain error or a NaN/inf result gives FALLBACK_VALUE (0.0) and
    one warning per expression, so a show never stops on a formula.
    """

    __slots__ = ("source", "names", "failures", "_code", "_constant")
    _globals = {"__builtins__": {}, **FUNCTIONS, **CONSTANTS}

    def __init__(self, source, names, code=None, constant_value=None):
        self.source = source
        self.names = frozenset(names)
        self.failures = 0
        self._code = code
        self._constant = constant_value

    @property
    def is_constant(self):
        return self._code is None

    def __call__(self, env):
        if self._code is None:
            return self._constant
        try:
            value = float(eval(self._code, self._globals, env))  # code object of a whitelisted AST
        except (ArithmeticError, ValueError, TypeError, NameError) as exc:
            return self._fail(f"{type(exc).__name__}: {exc}")
        if not math.isfinite(value):
            return self._fail(f"result is {value}")
        return value

    def _fail(self, why):
        self.failures += 1
        if self.failures == 1:
            log.warning(
                "expression %r: %s; using %s (further failures of it are counted, not logged)",
                self.source,
                why,
                FALLBACK_VALUE,
            )
        return FALLBACK_VALUE

    def __repr__(self):
        return f"Expression({self.source!r})"


def constant(value):
    """An Expression that always gives `value`."""
    return Expression(repr(value), (), None, float(value))


def _quoted(source):
    """`source` quoted for an error message; a very long one is cut, so that the error stays one readable line."""
    return f"'{source}'" if len(source) <= 100 else f"'{source[:60]}...' ({len(source)} characters)"


def _message(source, column, message):
    where = f" at column {column}" if column else ""
    return ExpressionError(f"expression {_quoted(source)}{where}: {message}")


def _error(source, node, message):
    col = getattr(node, "col_offset", None)
    return _message(source, None if col is None else col + 1, message)


def _too_deep(source):
    return _message(source, None, f"nested too deeply (at most {MAX_DEPTH} levels of operators and calls)")


def _parse(text):
    """The AST of `text`, or ExpressionError for invalid syntax, a statement, or nesting too deep to parse."""
    try:
        return ast.parse(text, mode="eval")
    except (MemoryError, RecursionError):  # CPython's parser and AST builder, with limits that vary by version
        raise _too_deep(text) from None
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL character, on Python 3.10
        if getattr(exc, "msg", None) == "too many nested parentheses":
            raise _too_deep(text) from None
        error = exc
    try:
        ast.parse(text, mode="exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise _message(
            text, getattr(error, "offset", None), f"invalid syntax ({getattr(error, 'msg', error)})"
        ) from None
    raise _message(text, None, "statements (import, assignment, ...) are not allowed")


def _depth(tree):
    """How deeply expression nodes nest in `tree` (without recursion: the tree may be thousands deep)."""
    deepest, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        depth += isinstance(node, ast.expr)
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in ast.iter_child_nodes(node))
    return deepest


class _Validator(ast.NodeVisitor):
    def __init__(self, source, variables):
        self.source = source
        self.variables = variables
        self.used = set()

    def fail(self, node, message):
        raise _error(self.source, node, message)

    def generic_visit(self, node):
        for kind, message in _REJECTED.items():
            if isinstance(node, kind):
                self.fail(node, message)
        if not isinstance(
            node,
            (
                ast.Expression,
                ast.BinOp,
                ast.UnaryOp,
                ast.BoolOp,
                ast.Compare,
                ast.IfExp,
                ast.Call,
                ast.Name,
                ast.Constant,
                ast.Load,
                ast.And,
                ast.Or,
            )
            + _BINARY
            + _UNARY
            + _COMPARE,
        ):
            self.fail(node, f"'{type(node).__name__}' is not allowed; use {_ALLOWED_SUMMARY}")
        super().generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            self.fail(node, f"only numbers are allowed as constants, not {node.value!r}")

    def visit_Name(self, node):
        name = node.id
        if name.startswith("__"):
            self.fail(node, f"names with double underscores ('{name}') are not allowed")
        if name in FUNCTIONS:
            self.fail(node, f"'{name}' is a function; call it like {name}(...)")
        if name in CONSTANTS:
            return
        if name not in self.variables:
            others = sorted(set(CONSTANTS) | set(FUNCTIONS))  # a variable is the likelier meaning
            hint = did_you_mean(name, self.variables) or did_you_mean(name, others)
            self.fail(node, f"unknown name {_quoted(name)}{hint}; variables here: {', '.join(sorted(self.variables))}")
        self.used.add(name)

    def visit_Call(self, node):
        if not isinstance(node.func, ast.Name):
            self.fail(node, "only named functions can be called, like sin(t)")
        name = node.func.id
        if name.startswith("__"):
            self.fail(node, f"names with double underscores ('{name}') are not allowed")
        if name not in FUNCTIONS:
            hint = did_you_mean(name, FUNCTIONS)
            self.fail(node, f"unknown function {_quoted(name)}{hint}; see README for the list of functions")
        if node.keywords:
            self.fail(node, f"keyword arguments are not allowed in {name}(...)")
        for arg in node.args:
            self.visit(arg)


class _ConstantFolder:
    """Computes the parts of a validated expression made of numbers and operators only, in floats, to
    refuse a constant exponent above MAX_CONSTANT_EXPONENT and a constant part that overflows."""

    def __init__(self, source):
        self.source = source

    def value(self, node):
        """The float value of `node` if it has no names or calls, else None; checks its parts either way."""
        if isinstance(node, ast.Constant):
            return self._apply(node, float, node.value)
        if isinstance(node, ast.UnaryOp):
            return self._apply(node, _OPERATORS[type(node.op)], self.value(node.operand))
        if isinstance(node, ast.BinOp):
            left, right = self.value(node.left), self.value(node.right)
            if isinstance(node.op, ast.Pow) and right is not None and abs(right) > MAX_CONSTANT_EXPONENT:
                raise _error(self.source, node, f"exponent too large (|exponent| must be <= {MAX_CONSTANT_EXPONENT:g})")
            return self._apply(node, _OPERATORS[type(node.op)], left, right)
        if isinstance(node, ast.Compare):
            operators = [_OPERATORS[type(op)] for op in node.ops]
            return self._apply(
                node,
                lambda *v: all(op(a, b) for op, a, b in zip(operators, v, v[1:])),
                *map(self.value, [node.left, *node.comparators]),
            )
        if isinstance(node, ast.BoolOp):
            stops_at = (lambda v: not v) if isinstance(node.op, ast.And) else bool
            return self._apply(
                node, lambda *v: next((x for x in v if stops_at(x)), v[-1]), *map(self.value, node.values)
            )
        if isinstance(node, ast.IfExp):
            return self._apply(
                node,
                lambda test, body, orelse: body if test else orelse,
                self.value(node.test),
                self.value(node.body),
                self.value(node.orelse),
            )
        for child in ast.iter_child_nodes(node):  # a name, or a call and its arguments
            self.value(child)
        return None

    def _apply(self, node, function, *args):
        if any(arg is None for arg in args):
            return None
        try:
            result = function(*args)
        except OverflowError:
            raise self._overflow(node) from None
        except ZeroDivisionError:  # left to the evaluation: an error if the whole is constant, else 0 at run time
            return None
        return None if isinstance(result, complex) else self._finite(node, float(result))

    def _finite(self, node, value):
        if not math.isfinite(value):
            raise self._overflow(node)
        return value

    def _overflow(self, node):
        part = ast.get_source_segment(self.source, node) or self.source
        return _error(self.source, node, f"{_quoted(part)} overflows (floats end near 1.8e308)")


class _FloatsOnly(ast.NodeTransformer):
    """Numbers become floats, and comparisons and `not` give 1.0 or 0.0, so that every value is a float:
    Python integers (from literals, or True + True) could grow huge, as in 9**9**9**9, and never finish."""

    def visit_Constant(self, node):
        return ast.copy_location(ast.Constant(float(node.value)), node)

    def visit_Compare(self, node):
        self.generic_visit(node)
        return ast.copy_location(ast.IfExp(node, ast.Constant(1.0), ast.Constant(0.0)), node)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return ast.copy_location(ast.IfExp(node.operand, ast.Constant(0.0), ast.Constant(1.0)), node)
        return node


def compile_expression(source, variables=BUILTIN_VARIABLES):
    """Compile `source` (a string or a number) for the given variable names, or raise ExpressionError.

    Any input is accepted or refused quickly: at most MAX_LENGTH characters and MAX_DEPTH levels, checked
    before anything recurses; constant parts are computed in floats, after the whole tree is validated.
    """
    if isinstance(source, bool):
        raise ExpressionError(f"expression {source!r}: expected a number or a formula, not true/false")
    if isinstance(source, (int, float)):
        if not math.isfinite(source):
            raise ExpressionError(f"expression {source!r}: the value must be finite")
        return constant(source)
    text = str(source).strip()
    if not text:
        raise ExpressionError("empty expression: write a number or a formula such as 0.5*fLo")
    if len(text) > MAX_LENGTH:
        raise _message(text, None, f"too long (at most {MAX_LENGTH} characters)")
    tree = _parse(text)
    if _depth(tree) > MAX_DEPTH:
        raise _too_deep(text)
    validator = _Validator(text, frozenset(variables))
    validator.visit(tree)
    _ConstantFolder(text).value(tree.body)
    tree = ast.fix_missing_locations(_FloatsOnly().visit(tree))
    code = compile(tree, f"<expression {text}>", "eval")
    if not validator.used:
        try:
            value = float(eval(code, Expression._globals, {}))
        except OverflowError:
            raise _message(text, None, "the value overflows (floats end near 1.8e308)") from None
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise _message(text, None, str(exc)) from None
        if not math.isfinite(value):
            raise _message(text, None, f"the value is {value}, not a finite number")
        return Expression(text, (), None, value)
    return Expression(text, validator.used, code)

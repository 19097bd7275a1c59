"""Compile an expression string once (AST whitelist), evaluate it many times without raising."""

import ast
import difflib
import logging
import math

from vj.expressions.functions import BUILTIN_VARIABLES, CONSTANTS, FUNCTIONS

log = logging.getLogger("vj.expressions")

MAX_CONSTANT_EXPONENT = 100.0
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
            log.warning("expression %r: %s; using %s (further failures of it are counted, not logged)",
                        self.source, why, FALLBACK_VALUE)
        return FALLBACK_VALUE

    def __repr__(self):
        return f"Expression({self.source!r})"


def constant(value):
    """An Expression that always gives `value`."""
    return Expression(repr(value), (), None, float(value))


def _error(source, node, message):
    col = getattr(node, "col_offset", None)
    where = f" at column {col + 1}" if col is not None else ""
    return ExpressionError(f"expression '{source}'{where}: {message}")


def _constant_value(node):
    """The value of a name-free numeric subexpression, or None if it uses names."""
    if any(isinstance(n, ast.Name) for n in ast.walk(node)):
        return None
    try:
        return float(eval(compile(ast.Expression(body=node), "<const>", "eval"), {"__builtins__": {}}, {}))
    except (ArithmeticError, ValueError, TypeError):
        return math.inf


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
        if not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
                                 ast.IfExp, ast.Call, ast.Name, ast.Constant, ast.Load,
                                 ast.And, ast.Or) + _BINARY + _UNARY + _COMPARE):
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
            known = sorted(set(self.variables) | set(CONSTANTS) | set(FUNCTIONS))
            self.fail(node, f"unknown name '{name}'{did_you_mean(name, known)}; "
                            f"variables here: {', '.join(sorted(self.variables))}")
        self.used.add(name)

    def visit_Call(self, node):
        if not isinstance(node.func, ast.Name):
            self.fail(node, "only named functions can be called, like sin(t)")
        name = node.func.id
        if name.startswith("__"):
            self.fail(node, f"names with double underscores ('{name}') are not allowed")
        if name not in FUNCTIONS:
            hint = did_you_mean(name, FUNCTIONS)
            self.fail(node, f"unknown function '{name}'{hint}; see README for the list of functions")
        if node.keywords:
            self.fail(node, f"keyword arguments are not allowed in {name}(...)")
        for arg in node.args:
            self.visit(arg)

    def visit_BinOp(self, node):
        if isinstance(node.op, ast.Pow):
            exponent = _constant_value(node.right)
            if exponent is not None and abs(exponent) > MAX_CONSTANT_EXPONENT:
                self.fail(node, f"exponent too large (|exponent| must be <= {MAX_CONSTANT_EXPONENT:g})")
        self.generic_visit(node)


class _FloatConstants(ast.NodeTransformer):
    """Integers become floats so that no expression can build a huge Python integer."""

    def visit_Constant(self, node):
        return ast.copy_location(ast.Constant(float(node.value)), node)


def compile_expression(source, variables=BUILTIN_VARIABLES):
    """Compile `source` (a string or a number) for the given variable names, or raise ExpressionError."""
    if isinstance(source, bool):
        raise ExpressionError(f"expression {source!r}: expected a number or a formula, not true/false")
    if isinstance(source, (int, float)):
        if not math.isfinite(source):
            raise ExpressionError(f"expression {source!r}: the value must be finite")
        return constant(source)
    text = str(source).strip()
    if not text:
        raise ExpressionError("empty expression: write a number or a formula such as 0.5*fLo")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        try:
            ast.parse(text, mode="exec")
            raise ExpressionError(f"expression '{text}': statements (import, assignment, ...) are not allowed") from None
        except SyntaxError:
            pass
        col = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"expression '{text}'{col}: invalid syntax ({exc.msg})") from None
    validator = _Validator(text, frozenset(variables))
    validator.visit(tree)
    tree = ast.fix_missing_locations(_FloatConstants().visit(tree))
    code = compile(tree, f"<expression {text}>", "eval")
    if not validator.used:
        try:
            value = float(eval(code, Expression._globals, {}))
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ExpressionError(f"expression '{text}': {exc}") from None
        if not math.isfinite(value):
            raise ExpressionError(f"expression '{text}': the value is {value}, not a finite number")
        return Expression(text, (), None, value)
    return Expression(text, validator.used, code)

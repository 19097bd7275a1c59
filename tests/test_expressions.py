import logging
import math

import pytest

from vj.expressions import ExpressionError, compile_expression

VARS = ["t", "frame", "fLo", "fHi", "fLo_prev"]


@pytest.mark.parametrize("source, env, expected", [
    ("2", {}, 2.0),
    ("10*fHi", {"fHi": 0.5}, 5.0),
    ("fLo/(fLo + fHi)", {"fLo": 1.0, "fHi": 3.0}, 0.25),
    ("sin(pi/2) + cos(0) + floor(2.7) + sqrt(16)", {}, 1 + 1 + 2 + 4),
    ("abs(-2) + min(1, 2) + max(1, 2) + pow(2, 3) + round(2.6)", {}, 2 + 1 + 2 + 8 + 3),
    ("1 if t > 2 and not fLo else 0", {"t": 3.0, "fLo": 0.0}, 1.0),
    ("clamp(5) + lerp(0, 10, 0.5) + mix(0, 1, 0.25)", {}, 1 + 5 + 0.25),
    ("smoothstep(0, 1, 0.5) + step(0.5, 0.7)", {}, 1.5),
    ("saw(1.25) + tri(0.5) + sqr(0.2) + osc(0.25)", {}, 0.25 + 1 + 1 + 1),
    ("fLo_prev + tau - 2*pi + e - e", {"fLo_prev": 0.5}, 0.5),
    ("t >= 1", {"t": 1.0}, 1.0),
])
def test_evaluates(source, env, expected):
    assert compile_expression(source, VARS)(env) == pytest.approx(expected)


@pytest.mark.parametrize("source, fragment", [
    ("t.real", "attribute access"),
    ("().__class__", "attribute access"),
    ("[1][0]", "subscripts"),
    ("(lambda: 1)()", "only named functions"),
    ("lambda: 1", "lambda"),
    ("[x for x in (1, 2)]", "comprehensions"),
    ("__import__('os')", "double underscores"),
    ("__builtins__", "double underscores"),
    ("import os", "statements"),
    ("open('f')", "unknown function 'open'"),
    ("eval('1')", "unknown function 'eval'"),
    ("exec('1')", "unknown function"),
    ("'text'", "only numbers"),
    ("9**9**9", "exponent too large"),
    ("2**1000", "exponent too large"),
    ("flo + 1", "did you mean 'fLo'"),
    ("sinn(t)", "did you mean 'sin'"),
    ("sin", "is a function"),
    ("(x := 1)", "assignment"),
    ("max(*[1])", "not allowed"),
    ("min(1, key=abs)", "keyword"),
    ("1 +", "invalid syntax"),
    ("", "empty expression"),
    ("inf - inf", "not a finite number"),
    ("1/0", "division by zero"),
])
def test_rejects_at_compile_time(source, fragment):
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, VARS)
    assert fragment in str(info.value)
    assert source.strip() in str(info.value) or not source


def test_error_names_the_position():
    with pytest.raises(ExpressionError, match=r"at column 9: attribute"):
        compile_expression("1 + t + t.real", VARS)


@pytest.mark.parametrize("source, env", [
    ("fLo/(fLo + fHi)", {"fLo": 0.0, "fHi": 0.0}),   # pytti's example in silence: 0/0
    ("log(fLo)", {"fLo": 0.0}),
    ("sqrt(fLo - 1)", {"fLo": 0.0}),
    ("exp(fLo * 1000)", {"fLo": 1.0}),
    ("fLo * inf", {"fLo": 1.0}),
])
def test_runtime_failures_give_zero_and_warn_once(source, env, caplog):
    expr = compile_expression(source, VARS)
    with caplog.at_level(logging.WARNING, logger="vj.expressions"):
        values = [expr(env) for _ in range(50)]
    assert values == [0.0] * 50
    assert expr.failures == 50
    warnings = [r for r in caplog.records if source in r.getMessage()]
    assert len(warnings) == 1


def test_result_is_always_a_finite_float():
    expr = compile_expression("fLo > 0.5", VARS)
    assert expr({"fLo": 0.7}) == 1.0 and isinstance(expr({"fLo": 0.7}), float)
    assert math.isfinite(compile_expression("2**100", VARS)({}))


def test_constant_expressions_are_folded():
    expr = compile_expression("2*pi", VARS)
    assert expr.is_constant and expr(None) == pytest.approx(2 * math.pi)
    assert compile_expression(0.25, VARS)({}) == 0.25
    with pytest.raises(ExpressionError):
        compile_expression(True, VARS)

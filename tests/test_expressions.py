import json
import logging
import math
import subprocess
import sys

import pytest

from conftest import ROOT
from vj.language.expressions import ExpressionError, compile_expression
from vj.language.expressions import compiler
from vj.language.expressions.compiler import MAX_DEPTH, MAX_LENGTH

VARS = ["t", "frame", "fLo", "fHi", "fLo_prev"]


@pytest.mark.parametrize(
    "source, env, expected",
    [
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
    ],
)
def test_evaluates(source, env, expected):
    assert compile_expression(source, VARS)(env) == pytest.approx(expected)


@pytest.mark.parametrize(
    "source, fragment",
    [
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
    ],
)
def test_rejects_at_compile_time(source, fragment):
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, VARS)
    assert fragment in str(info.value)
    assert source.strip() in str(info.value) or not source


def test_error_names_the_position():
    with pytest.raises(ExpressionError, match=r"at column 9: attribute"):
        compile_expression("1 + t + t.real", VARS)


@pytest.mark.parametrize(
    "source, env",
    [
        ("fLo/(fLo + fHi)", {"fLo": 0.0, "fHi": 0.0}),  # pytti's example in silence: 0/0
        ("log(fLo)", {"fLo": 0.0}),
        ("sqrt(fLo - 1)", {"fLo": 0.0}),
        ("exp(fLo * 1000)", {"fLo": 1.0}),
        ("fLo * inf", {"fLo": 1.0}),
    ],
)
def test_runtime_failures_give_zero_and_warn_once(source, env, caplog):
    expr = compile_expression(source, VARS)
    with caplog.at_level(logging.WARNING, logger="vj.language.expressions"):
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


def compile_in_child(source, env=None):
    """compile_expression(source, VARS), then its value at `env` if given, in a child process with a
    10 s limit: an expression that hangs fails its test instead of stalling the suite."""
    child = (
        "import json, sys\n"
        "from vj.language.expressions import ExpressionError, compile_expression\n"
        "job = json.load(sys.stdin)\n"
        "try:\n"
        "    expr = compile_expression(job['source'], job['variables'])\n"
        "except ExpressionError as exc:\n"
        "    print('error:', exc)\n"
        "else:\n"
        "    print('value:', expr(job['env']) if job['env'] is not None else None)\n"
    )
    job = json.dumps({"source": source, "variables": VARS, "env": env})
    result = subprocess.run(
        [sys.executable, "-c", child], input=job, cwd=ROOT, capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


BOOL_TWO = "((1>0)+(1>0))"  # True + True: Python integers, unless every value is a float


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("9**9**9**9", "at column 4: exponent too large"),
        ("2**3**4**5**6", "at column 7: exponent too large"),
        ("t + 2**3**4**5**6", "exponent too large"),
        ("**".join([BOOL_TWO] * 7), "exponent too large"),
        ("ceil(9e9)**ceil(9e9)", "the value overflows"),
        ("round(9e9)**round(9e9)", "the value overflows"),
        ("1e300*1e300", "'1e300*1e300' overflows"),
        ("t + 1e999", "at column 5: '1e999' overflows"),
        ("t*(10**100)**100", "'(10**100)**100' overflows"),
        ("t + 1" + "0" * 400, "overflows"),
    ],
)
def test_huge_constants_are_refused_without_hanging(source, fragment):
    message = compile_in_child(source)
    assert message.startswith(f"error: expression '{source[:60]}") and fragment in message


@pytest.mark.parametrize(
    "source",
    [
        "**".join(["((t>0)+(t>0))"] * 6),
        "ceil(t*9e9)**ceil(t*9e9)",
        "floor(t*9e9)**trunc(t*9e9)",
    ],
)
def test_huge_values_at_run_time_give_zero_without_hanging(source):
    assert compile_in_child(source, {"t": 1.0}) == "value: 0.0"


def test_parts_are_not_evaluated_before_the_whole_expression_is_validated():
    """A name-free exponent used to be eval'd before its attribute access was rejected."""
    with pytest.raises(ExpressionError, match=r"at column 5: only named functions can be called"):
        compile_expression("1**((1).__class__.__base__.__subclasses__())", VARS)


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("(" * 201 + "t" + ")" * 201, "nested too deeply"),
        ("-" * 1000 + "t", "nested too deeply"),
        ("not " * 200 + "t", "nested too deeply"),
        ("sin(" * (MAX_DEPTH + 1) + "t" + ")" * (MAX_DEPTH + 1), "nested too deeply"),
        ("+".join(["t"] * (MAX_DEPTH + 1)), "nested too deeply"),
        ("(" * 5000 + "t" + ")" * 5000, "too long"),
        ("-" * 100_000 + "1", "too long"),
        ("+".join(["1"] * 100_000), "too long"),
        ("not " * 2500 + "t", "too long"),
        ("x" * (MAX_LENGTH + 1), "too long"),
    ],
)
def test_long_and_deep_expressions_get_one_short_error(source, fragment):
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, VARS)
    message = str(info.value)
    assert message.startswith(f"expression '{source[:60]}...' ({len(source)} characters)")
    assert fragment in message and len(message) < 200 and "\n" not in message


def test_the_limits_leave_room_for_real_formulas():
    deep = "+".join(["t"] * MAX_DEPTH)
    assert compile_expression(deep, VARS)({"t": 1.0}) == MAX_DEPTH
    long = "+".join(["0.001*t*(1 + 0.5*sin(t))"] * (MAX_LENGTH // 100))
    assert len(long) < MAX_LENGTH and compile_expression(long, VARS)({"t": 0.0}) == 0.0
    assert compile_expression("(" * 150 + "t" + ")" * 150, VARS)({"t": 2.0}) == 2.0


@pytest.mark.parametrize("error", [MemoryError, RecursionError])
def test_parser_exhaustion_is_reported_as_nesting(monkeypatch, error):
    """Python's parser gives up on deep nesting with these errors, at depths that vary by version."""

    def exhausted(*args, **kwargs):
        raise error()

    monkeypatch.setattr(compiler.ast, "parse", exhausted)
    with pytest.raises(ExpressionError, match=r"^expression '-t': nested too deeply"):
        compile_expression("-t", VARS)


def test_vj_check_refuses_a_power_tower_in_a_prompt_weight(tmp_path):
    preset = tmp_path / "tower.yaml"
    preset.write_text('scenes: "a cat: 9**9**9**9"\n')
    result = subprocess.run(
        [sys.executable, "-m", "vj", "check", str(preset)], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{preset}:1: scenes: scene 1, prompt 'a cat': expression '9**9**9**9' at column 4: "
        "exponent too large (|exponent| must be <= 100)"
    ]

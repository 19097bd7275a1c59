"""Safe numeric expressions for prompt weights, motion and settings."""

from vj.language.expressions.compiler import Expression, ExpressionError, compile_expression, constant
from vj.language.expressions.functions import RESERVED_NAMES

__all__ = ["Expression", "ExpressionError", "compile_expression", "constant", "RESERVED_NAMES"]

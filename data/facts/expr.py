"""A small, safe arithmetic evaluator for the `answer` / `expr` fields of the fact banks.

Grammar: numbers, input names, `+ - * / **`, unary minus, parentheses and the functions
min max round sqrt log exp abs. Anything else (attributes, subscripts, comparisons, other calls,
strings, keywords) is rejected when the bank is loaded, with the file:line of the fact. Powers are
computed in floating point (no huge integers), and results that are whole numbers come back as
`int` so that "{m}" prints "12", not "12.0".
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping

FUNCTIONS = {
    "min": (min, 1, None),
    "max": (max, 1, None),
    "round": (round, 1, 2),
    "sqrt": (math.sqrt, 1, 1),
    "log": (math.log, 1, 2),
    "exp": (math.exp, 1, 1),
    "abs": (abs, 1, 1),
}
_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: _pow(a, b),
}


def _pow(a: float, b: float) -> float:
    x = float(a) ** b  # float: no huge integers; overflow raises
    if isinstance(x, complex):
        raise ValueError("a negative number to a fractional power")
    return x


class ExprError(ValueError):
    """A malformed expression (message says what is not allowed)."""


def tidy(x: float) -> float | int:
    """Whole-number floats as int (so they format without ".0"); everything else unchanged."""
    if isinstance(x, float) and math.isfinite(x) and x.is_integer() and abs(x) < 1e15:
        return int(x)
    return x


class Expr:
    """A checked expression; `Expr(src, names)(values)` evaluates it."""

    def __init__(self, src: str, names: frozenset[str] | set[str]):
        if not isinstance(src, str) or not src.strip():
            raise ExprError("a non-empty arithmetic expression")
        try:
            tree = ast.parse(src.strip(), mode="eval")
        except SyntaxError as e:
            raise ExprError(f"an arithmetic expression (syntax error at column {e.offset})") from None
        self.src = src
        self.names = frozenset(names)
        self.used: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def _check(self, n: ast.AST) -> None:
        if isinstance(n, ast.Constant):
            if isinstance(n.value, bool) or not isinstance(n.value, (int, float)):
                raise ExprError(f"only numbers as constants (not {n.value!r})")
        elif isinstance(n, ast.Name):
            if n.id not in self.names:
                known = ", ".join(sorted(self.names)) or "none"
                raise ExprError(f"names of numeric inputs only (unknown {n.id!r}; known: {known})")
            self.used.add(n.id)
        elif isinstance(n, ast.BinOp):
            if type(n.op) not in _BINARY:
                raise ExprError(f"only + - * / ** (not {type(n.op).__name__})")
            self._check(n.left)
            self._check(n.right)
        elif isinstance(n, ast.UnaryOp):
            if not isinstance(n.op, ast.USub):
                raise ExprError(f"only unary minus (not {type(n.op).__name__})")
            self._check(n.operand)
        elif isinstance(n, ast.Call):
            if not isinstance(n.func, ast.Name) or n.func.id not in FUNCTIONS:
                raise ExprError("calls of " + " ".join(FUNCTIONS) + " only")
            if n.keywords:
                raise ExprError(f"no keyword arguments in {n.func.id}()")
            _, lo, hi = FUNCTIONS[n.func.id]
            if len(n.args) < lo or (hi is not None and len(n.args) > hi):
                raise ExprError(f"{n.func.id}() with {lo}{'+' if hi is None else '-' + str(hi)} arguments")
            for a in n.args:
                if isinstance(a, ast.Starred):
                    raise ExprError("no *args")
                self._check(a)
        else:
            allowed = f"numbers, names, + - * / **, unary minus and {', '.join(FUNCTIONS)}"
            raise ExprError(f"{allowed} (not {type(n).__name__})")

    def __call__(self, values: Mapping[str, float]) -> float | int:
        x = self._eval(self._tree, values)
        if isinstance(x, float) and not math.isfinite(x):
            raise ZeroDivisionError("non-finite result")
        return tidy(x)

    def _eval(self, n: ast.AST, v: Mapping[str, float]):
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.Name):
            return v[n.id]
        if isinstance(n, ast.BinOp):
            return _BINARY[type(n.op)](self._eval(n.left, v), self._eval(n.right, v))
        if isinstance(n, ast.UnaryOp):
            return -self._eval(n.operand, v)
        fn = FUNCTIONS[n.func.id][0]  # type: ignore[attr-defined]
        args = [self._eval(a, v) for a in n.args]  # type: ignore[attr-defined]
        if fn is round and len(args) == 2:
            args[1] = int(args[1])
        return fn(*args)

    def __repr__(self) -> str:
        return f"Expr({self.src!r})"

"""Reading the expressions of a parsed statement: their parts and the sides of a comparison."""

from ..engine.influxql import (
    Binary,
    BooleanLiteral,
    Call,
    DurationLiteral,
    Expression,
    Identifier,
    NumberLiteral,
    Parenthesized,
    RegexLiteral,
    StringLiteral,
    Unary,
    Variable,
    walk,
)
from .rewrite import Refusal

_NOT_COMPARISONS = frozenset({"AND", "OR", "+", "-", "*", "/", "%", "&", "|", "^"})


def children(node: Expression) -> tuple[Expression, ...]:
    """The expressions directly inside ``node``."""
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Parenthesized):
        return (node.expression,)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.lhs, node.rhs)
    return ()


def conjuncts(node: Expression) -> list[Expression]:
    """The conditions ``node`` joins with AND, parentheses looked through."""
    if isinstance(node, Parenthesized):
        return conjuncts(node.expression)
    if isinstance(node, Binary) and node.operator == "AND":
        return conjuncts(node.lhs) + conjuncts(node.rhs)
    return [node]


def is_comparison(node: Binary) -> bool:
    """Whether ``node`` compares (rather than joins or computes)."""
    return node.operator not in _NOT_COMPARISONS


def sides(node: Binary) -> tuple[Identifier | None, Expression | None]:
    """The tag or field a comparison is on and what it is compared with; refuses the rest."""
    if isinstance(node.lhs, Identifier):
        if isinstance(node.rhs, Identifier):
            raise Refusal("comparing two fields or tags is not translated")
        return node.lhs, node.rhs
    if isinstance(node.rhs, Identifier):
        if isinstance(node.lhs, StringLiteral | RegexLiteral) or node.operator in ("=~", "!~"):
            raise Refusal("write the tag or field on the left of a comparison")
        return node.rhs, node.lhs
    for side in (node.lhs, node.rhs):
        if not isinstance(
            side,
            StringLiteral | NumberLiteral | DurationLiteral | BooleanLiteral | Variable,
        ) and any(isinstance(inner, Identifier) for inner in walk(side)):
            for inner in walk(side):
                if isinstance(inner, Identifier) and inner.name.lower() != "time":
                    raise Refusal(
                        f"a calculation with {inner.name!r} in a condition is not translated"
                    )
    return None, None

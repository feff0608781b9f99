"""The expression grammar: operators by precedence, operands, calls and ``::tag`` casts."""

from typing import Final

from .cursor import TokenCursor
from .lexer import QuerySyntaxError, describe
from .syntax import (
    Binary,
    BooleanLiteral,
    Call,
    DurationLiteral,
    Expression,
    Identifier,
    Node,
    NumberLiteral,
    Parenthesized,
    RegexLiteral,
    StringLiteral,
    Unary,
    Variable,
    Wildcard,
)

COMPARISONS: Final = frozenset({"=", "!=", "<>", "<", "<=", ">", ">=", "=~", "!~"})
# Binary operator precedence, loosest first.
_PRECEDENCE: Final = {
    "OR": 1,
    "AND": 2,
    **dict.fromkeys(COMPARISONS, 3),
    "+": 4,
    "-": 4,
    "|": 4,
    "^": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "&": 5,
}


class ExpressionParser:
    """Reads expressions, and the operands clauses take on their own (names, counts)."""

    def __init__(self, cursor: TokenCursor) -> None:
        self.cursor = cursor

    def expression(self, min_precedence: int = 1) -> Expression:
        cursor = self.cursor
        lhs = self.unary()
        while True:
            token = cursor.peek()
            operator = token.value if token.kind in ("OP", "KEYWORD") else ""
            precedence = _PRECEDENCE.get(operator, 0)
            if precedence < min_precedence or precedence == 0:
                return lhs
            cursor.next()
            if operator in ("=~", "!~"):
                rhs_token = cursor.peek(regex=True)
                if rhs_token.kind == "REGEX":
                    cursor.next(regex=True)
                    rhs: Expression = RegexLiteral(
                        start=rhs_token.start, end=rhs_token.end, pattern=rhs_token.value
                    )
                elif rhs_token.kind == "VAR":
                    rhs = self.unary()
                else:
                    raise QuerySyntaxError("expected a regex", rhs_token.start)
            else:
                rhs = self.expression(precedence + 1)
            lhs = Binary(start=lhs.start, end=rhs.end, operator=operator, lhs=lhs, rhs=rhs)

    def unary(self) -> Expression:
        token = self.cursor.peek(regex=True)
        if token.kind == "OP" and token.value in ("-", "+"):
            self.cursor.next()
            operand = self.unary()
            return Unary(start=token.start, end=operand.end, operator=token.value, operand=operand)
        return self.primary()

    def primary(self) -> Expression:
        cursor = self.cursor
        token = cursor.next(regex=True)
        kind, value = token.kind, token.value
        if kind == "OP" and value == "(":
            cursor.depth += 1
            if cursor.depth > 64:
                raise QuerySyntaxError("expression nested too deeply", token.start)
            inner = self.expression()
            close = cursor.expect_op(")")
            cursor.depth -= 1
            return Parenthesized(start=token.start, end=close.end, expression=inner)
        if kind == "OP" and value == "*":
            return Wildcard(start=token.start, end=self._cast_end(token.end), cast=self._cast())
        if kind == "STRING":
            return StringLiteral(start=token.start, end=token.end, value=value)
        if kind == "NUMBER":
            return NumberLiteral(start=token.start, end=token.end, text=value)
        if kind == "DURATION":
            return DurationLiteral(start=token.start, end=token.end, text=value)
        if kind == "REGEX":
            return RegexLiteral(start=token.start, end=token.end, pattern=value)
        if kind == "VAR":
            return Variable(start=token.start, end=token.end, text=value)
        if kind == "IDENT" and value.lower() in ("true", "false"):
            return BooleanLiteral(start=token.start, end=token.end, value=value.lower() == "true")
        if kind == "IDENT" and cursor.at_op("("):
            cursor.next()
            return self.call_rest(value, token.start, opened=True)
        if kind in ("IDENT", "QIDENT"):
            cast_end = self._cast_end(token.end)
            return Identifier(
                start=token.start,
                end=cast_end,
                name=value,
                cast=self._cast(),
                quoted=kind == "QIDENT",
            )
        raise QuerySyntaxError(f"unexpected {describe(token)}", token.start)

    def _cast_end(self, end: int) -> int:
        # Peeks "::tag"/"::field" without consuming; _cast consumes it.
        cursor = self.cursor
        saved = cursor.mark()
        token = cursor.next()
        if token.kind == "OP" and token.value == "::":
            word = cursor.next()
            cursor.rewind(saved)
            return word.end
        cursor.rewind(saved)
        return end

    def _cast(self) -> str | None:
        cursor = self.cursor
        if not cursor.at_op("::"):
            return None
        cursor.next()
        token = cursor.next()
        if token.kind not in ("IDENT", "KEYWORD") or token.value.lower() not in ("tag", "field"):
            raise QuerySyntaxError("expected ::tag or ::field", token.start)
        return token.value.lower()

    def call_rest(self, name: str, start: int, *, opened: bool = False) -> Call:
        cursor = self.cursor
        if not opened:
            cursor.expect_op("(")
        args: list[Expression] = []
        if not cursor.at_op(")"):
            args.append(self.dimension())
            while cursor.at_op(","):
                cursor.next()
                args.append(self.dimension())
        close = cursor.expect_op(")")
        return Call(start=start, end=close.end, name=name, args=tuple(args))

    def dimension(self) -> Expression:
        token = self.cursor.peek(regex=True)
        if token.kind == "REGEX":
            self.cursor.next(regex=True)
            return RegexLiteral(start=token.start, end=token.end, pattern=token.value)
        return self.expression()

    def count(self) -> Node:
        token = self.cursor.next()
        if token.kind == "NUMBER" and token.value.isdigit():
            return NumberLiteral(start=token.start, end=token.end, text=token.value)
        if token.kind == "VAR":
            return Variable(start=token.start, end=token.end, text=token.value)
        raise QuerySyntaxError(f"expected a whole number, found {describe(token)}", token.start)

    def plain_identifier(self) -> Identifier:
        token = self.cursor.expect_identifier()
        return Identifier(
            start=token.start, end=token.end, name=token.value, quoted=token.kind == "QIDENT"
        )

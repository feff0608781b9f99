"""The parsers' place in the token stream, and the checks they make on the next token."""

from .lexer import Lexer, QuerySyntaxError, Token, describe


class TokenCursor:
    """Where the parse is: the next token, what it is, and how deep the parse is nested."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lexer = Lexer(text)
        # Subqueries and parentheses share one count, so each limit counts both kinds.
        self.depth = 0

    def peek(self, *, regex: bool = False) -> Token:
        return self.lexer.peek(regex=regex)

    def next(self, *, regex: bool = False) -> Token:
        return self.lexer.next(regex=regex)

    def mark(self) -> int:
        return self.lexer.pos

    def rewind(self, mark: int) -> None:
        self.lexer.pos = mark

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "KEYWORD" and token.value in words

    def at_op(self, *ops: str) -> bool:
        token = self.peek()
        return token.kind == "OP" and token.value in ops

    def expect_keyword(self, word: str) -> Token:
        token = self.next()
        if token.kind != "KEYWORD" or token.value != word:
            raise QuerySyntaxError(f"expected {word}, found {describe(token)}", token.start)
        return token

    def expect_op(self, op: str) -> Token:
        token = self.next()
        if token.kind != "OP" or token.value != op:
            raise QuerySyntaxError(f"expected {op!r}, found {describe(token)}", token.start)
        return token

    def expect_identifier(self) -> Token:
        token = self.next()
        if token.kind not in ("IDENT", "QIDENT"):
            raise QuerySyntaxError(f"expected an identifier, found {describe(token)}", token.start)
        return token

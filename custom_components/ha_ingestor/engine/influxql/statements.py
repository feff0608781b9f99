"""The statement grammar: the statements of a query, SELECT and its clauses, SHOW TAG VALUES."""

from .cursor import TokenCursor
from .expressions import ExpressionParser
from .lexer import QuerySyntaxError, Token, describe
from .syntax import (
    Expression,
    Identifier,
    Measurement,
    Node,
    OtherStatement,
    Query,
    RegexLiteral,
    Select,
    SelectField,
    ShowTagValues,
    Source,
    Statement,
    Subquery,
    Variable,
)


class SelectParser:
    """Reads a SELECT: its fields, its sources (measurements and subqueries) and its clauses."""

    def __init__(self, cursor: TokenCursor, expressions: ExpressionParser) -> None:
        self.cursor = cursor
        self.expressions = expressions

    def select(self) -> Select:
        cursor = self.cursor
        cursor.depth += 1
        if cursor.depth > 32:
            raise QuerySyntaxError("subqueries nested too deeply", cursor.peek().start)
        start = cursor.expect_keyword("SELECT").start
        fields = [self.select_field()]
        while cursor.at_op(","):
            cursor.next()
            fields.append(self.select_field())
        into: Node | None = None
        if cursor.at_keyword("INTO"):
            into_token = cursor.next()
            target = self.measurement()
            into = Node(start=into_token.start, end=target.end)
        cursor.expect_keyword("FROM")
        sources_start = cursor.peek(regex=True).start
        sources: list[Source] = [self.source()]
        while cursor.at_op(","):
            cursor.next()
            sources.append(self.source())
        sources_end = sources[-1].end
        end = sources_end
        where = where_start = None
        if cursor.at_keyword("WHERE"):
            where_start = cursor.next().start
            where = self.expressions.expression()
            end = where.end
        dimensions: list[Expression] = []
        group_by_start = None
        if cursor.at_keyword("GROUP"):
            group_by_start = cursor.next().start
            cursor.expect_keyword("BY")
            dimensions.append(self.expressions.dimension())
            while cursor.at_op(","):
                cursor.next()
                dimensions.append(self.expressions.dimension())
            end = dimensions[-1].end
        fill = None
        if cursor.at_keyword("FILL"):
            fill_token = cursor.next()
            fill = self.expressions.call_rest("fill", fill_token.start)
            end = fill.end
        order_desc = False
        if cursor.at_keyword("ORDER"):
            cursor.next()
            cursor.expect_keyword("BY")
            token = cursor.next()
            if token.kind != "IDENT" or token.value.lower() != "time":
                raise QuerySyntaxError("only ORDER BY time is supported", token.start)
            end = token.end
            if cursor.at_keyword("ASC", "DESC"):
                direction = cursor.next()
                order_desc = direction.value == "DESC"
                end = direction.end
        limits: dict[str, Node] = {}
        for word in ("LIMIT", "OFFSET", "SLIMIT", "SOFFSET"):
            if cursor.at_keyword(word):
                cursor.next()
                limits[word] = self.expressions.count()
                end = limits[word].end
        timezone = None
        token = cursor.peek()
        if token.kind == "IDENT" and token.value.lower() == "tz":
            cursor.next()
            timezone = self.expressions.call_rest("tz", token.start)
            end = timezone.end
        cursor.depth -= 1
        return Select(
            start=start,
            end=end,
            fields=tuple(fields),
            sources=tuple(sources),
            sources_start=sources_start,
            sources_end=sources_end,
            into=into,
            where=where,
            where_start=where_start,
            dimensions=tuple(dimensions),
            group_by_start=group_by_start,
            fill=fill,
            order_desc=order_desc,
            limit=limits.get("LIMIT"),
            offset=limits.get("OFFSET"),
            slimit=limits.get("SLIMIT"),
            soffset=limits.get("SOFFSET"),
            timezone=timezone,
        )

    def select_field(self) -> SelectField:
        expression = self.expressions.expression()
        alias = None
        if self.cursor.at_keyword("AS"):
            self.cursor.next()
            alias = self.expressions.plain_identifier()
        end = alias.end if alias else expression.end
        return SelectField(start=expression.start, end=end, expression=expression, alias=alias)

    def source(self) -> Source:
        cursor = self.cursor
        token = cursor.peek()
        if token.kind == "OP" and token.value == "(":
            cursor.next()
            select = self.select()
            close = cursor.expect_op(")")
            return Subquery(start=token.start, end=close.end, select=select)
        return self.measurement()

    def measurement(self) -> Measurement:
        cursor = self.cursor
        parts: list[tuple[str | None, Token]] = []
        start = cursor.peek(regex=True).start
        while True:
            token = cursor.next(regex=True)
            if token.kind == "REGEX":
                regex = RegexLiteral(start=token.start, end=token.end, pattern=token.value)
                return self._measurement(start, parts, token, regex=regex)
            if token.kind == "VAR":
                variable = Variable(start=token.start, end=token.end, text=token.value)
                return self._measurement(start, parts, token, variable=variable)
            if token.kind not in ("IDENT", "QIDENT", "KEYWORD"):
                raise QuerySyntaxError(f"expected a measurement, found {describe(token)}", start)
            if token.kind == "KEYWORD":
                raise QuerySyntaxError(f"expected a measurement, found {token.value}", token.start)
            if not cursor.at_op("."):
                return self._measurement(start, parts, token, name=token.value)
            parts.append((token.value, token))
            cursor.next()
            # "db..measurement" skips the retention policy.
            if cursor.at_op(".") and len(parts) == 1:
                cursor.next()
                parts.append((None, token))
            if len(parts) > 2:
                raise QuerySyntaxError("too many parts in a measurement name", token.start)

    def _measurement(
        self,
        start: int,
        parts: list[tuple[str | None, Token]],
        last: Token,
        *,
        name: str | None = None,
        regex: RegexLiteral | None = None,
        variable: Variable | None = None,
    ) -> Measurement:
        database = policy = None
        if len(parts) == 2:
            database, policy = parts[0][0], parts[1][0]
        elif len(parts) == 1:
            policy = parts[0][0]
        return Measurement(
            start=start,
            end=last.end,
            database=database,
            policy=policy,
            name=name,
            regex=regex,
            variable=variable,
            name_start=last.start,
            name_end=last.end,
        )


class StatementParser:
    """Reads a query text: its statements, SELECT through :class:`SelectParser`, SHOW TAG VALUES."""

    def __init__(self, text: str) -> None:
        self.cursor = TokenCursor(text)
        self.expressions = ExpressionParser(self.cursor)
        self.selects = SelectParser(self.cursor, self.expressions)

    def query(self) -> Query:
        cursor = self.cursor
        statements: list[Statement] = []
        while True:
            while cursor.at_op(";"):
                cursor.next()
            if cursor.peek().kind == "EOF":
                break
            statements.append(self.statement())
            token = cursor.peek()
            if token.kind == "EOF":
                break
            if not (token.kind == "OP" and token.value == ";"):
                raise QuerySyntaxError(f"unexpected {describe(token)}", token.start)
        if not statements:
            raise QuerySyntaxError("empty query", 0)
        return Query(cursor.text, tuple(statements))

    def statement(self) -> Statement:
        cursor = self.cursor
        token = cursor.peek()
        if token.kind == "KEYWORD" and token.value == "SELECT":
            return self.selects.select()
        if token.kind == "KEYWORD" and token.value == "SHOW":
            saved = cursor.mark()
            cursor.next()
            if cursor.at_keyword("TAG"):
                cursor.next()
                if cursor.at_keyword("VALUES"):
                    cursor.next()
                    return self.show_tag_values(token.start)
            cursor.rewind(saved)
        if token.kind not in ("KEYWORD", "IDENT"):
            raise QuerySyntaxError(f"a statement cannot start with {describe(token)}", token.start)
        return self.other_statement()

    def other_statement(self) -> OtherStatement:
        cursor = self.cursor
        start = cursor.peek().start
        words: list[str] = []
        end = start
        depth = 0
        while True:
            token = cursor.peek(regex=True)
            if token.kind == "EOF" or (token.kind == "OP" and token.value == ";" and not depth):
                break
            cursor.next(regex=True)
            if token.kind == "OP" and token.value == "(":
                depth += 1
            elif token.kind == "OP" and token.value == ")":
                depth -= 1
            if len(words) < 3 and token.kind in ("KEYWORD", "IDENT"):
                words.append(token.value.upper())
            end = token.end
        return OtherStatement(start=start, end=end, words=" ".join(words))

    def show_tag_values(self, start: int) -> ShowTagValues:
        cursor = self.cursor
        if cursor.at_keyword("ON"):
            cursor.next()
            cursor.expect_identifier()
        sources: list[Measurement] = []
        sources_end = None
        if cursor.at_keyword("FROM"):
            cursor.next()
            sources.append(self.selects.measurement())
            while cursor.at_op(","):
                cursor.next()
                sources.append(self.selects.measurement())
            sources_end = sources[-1].end
        with_start = cursor.expect_keyword("WITH").start
        cursor.expect_keyword("KEY")
        token = cursor.next()
        keys: list[Identifier] = []
        key_regex = None
        if token.kind == "KEYWORD" and token.value == "IN":
            operator = "IN"
            cursor.expect_op("(")
            keys.append(self.expressions.plain_identifier())
            while cursor.at_op(","):
                cursor.next()
                keys.append(self.expressions.plain_identifier())
            key_end = cursor.expect_op(")").end
        elif token.kind == "OP" and token.value in ("=", "!=", "<>"):
            operator = token.value
            keys.append(self.expressions.plain_identifier())
            key_end = keys[-1].end
        elif token.kind == "OP" and token.value in ("=~", "!~"):
            operator = token.value
            regex_token = cursor.next(regex=True)
            if regex_token.kind != "REGEX":
                raise QuerySyntaxError("expected a regex", regex_token.start)
            key_regex = RegexLiteral(
                start=regex_token.start, end=regex_token.end, pattern=regex_token.value
            )
            key_end = regex_token.end
        else:
            raise QuerySyntaxError(f"expected a key operator, found {describe(token)}", token.start)
        end = key_end
        where = where_start = None
        if cursor.at_keyword("WHERE"):
            where_start = cursor.next().start
            where = self.expressions.expression()
            end = where.end
        limits: dict[str, Node] = {}
        for word in ("LIMIT", "OFFSET"):
            if cursor.at_keyword(word):
                cursor.next()
                limits[word] = self.expressions.count()
                end = limits[word].end
        return ShowTagValues(
            start=start,
            end=end,
            sources=tuple(sources),
            sources_end=sources_end,
            with_start=with_start,
            key_operator=operator,
            keys=tuple(keys),
            key_regex=key_regex,
            key_end=key_end,
            where=where,
            where_start=where_start,
            limit=limits.get("LIMIT"),
            offset=limits.get("OFFSET"),
        )

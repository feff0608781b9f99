"""The WHERE of a legacy query: what its conditions ask for, and their optimized form."""

from collections.abc import Set as AbstractSet

from ..engine.influxql import (
    VARIABLE,
    Binary,
    Expression,
    Identifier,
    Parenthesized,
    RegexLiteral,
    StringLiteral,
    Variable,
    quote_identifier,
    quote_regex,
    quote_string,
    variables_in,
    walk,
)
from ..layouts.optimized import identity_tag
from .expressions import children, conjuncts, is_comparison, sides
from .fields import condition_field
from .layout_pair import DOMAIN, ENTITY_ID, LayoutPair
from .patterns import prefix_object_id_regex
from .rewrite import Refusal, StatementRewrite


class WhereClause:
    """The WHERE clause of a statement: its domain condition, entity conditions, fields.

    ``inner`` is the WHERE of a query around a subquery (whose points are the subquery's
    rows); ``tags_only`` that of SHOW TAG VALUES, where only tags can be named.
    """

    def __init__(
        self,
        layouts: LayoutPair,
        entity_variables: AbstractSet[str],
        where: Expression | None,
        *,
        inner: bool,
        tags_only: bool = False,
        where_start: int | None = None,
    ) -> None:
        """Read the clause; refuses what cannot be translated."""
        self.layouts = layouts
        self.entity_variables = entity_variables
        self.where = where
        self.where_start = where_start
        self.inner = inner
        self.tags_only = tags_only
        self.domain: str | None = None
        self.domain_node: Expression | None = None
        # Object ids the WHERE limits entity_id to, when it does (for catalog look-ups).
        self.entity_literals: frozenset[str] | None = None
        self._entity_nodes: list[Binary] = []
        self._renames: list[tuple[Identifier, str]] = []
        self._parents: dict[int, Expression | None] = {}
        if where is not None:
            self._index(where, None)
            self._analyse(where)

    def _index(self, node: Expression, parent: Expression | None) -> None:
        self._parents[id(node)] = parent
        for child in children(node):
            self._index(child, node)

    def _analyse(self, where: Expression) -> None:
        top_level = conjuncts(where)
        top = {id(node) for node in top_level}
        for node in walk(where):
            if isinstance(node, Binary) and node.operator in ("AND", "OR"):
                continue
            if isinstance(node, Binary) and is_comparison(node):
                self._comparison(node, top_level=id(node) in top)
            elif isinstance(node, Identifier) and self._parents[id(node)] is None:
                raise Refusal(f"the condition {node.name!r} alone is not understood")
        sets = [found for node in top_level if (found := _entity_set(node)) is not None]
        if sets:
            literals = sets[0]
            for other in sets[1:]:
                literals &= other
            self.entity_literals = literals

    def _comparison(self, node: Binary, *, top_level: bool) -> None:
        identifier, literal = sides(node)
        if identifier is None:
            return
        name, operator = identifier.name, node.operator
        if name.lower() == "time" and identifier.cast is None:
            return
        tag = self._is_tag(identifier)
        if self.inner:
            if name == DOMAIN:
                raise Refusal("the optimized layout has no domain tag to filter on")
            if name == ENTITY_ID:
                self._entity(node, operator, literal)
            return
        if not tag:
            if self.tags_only:
                raise Refusal(f"{name!r} is not a legacy tag")
            text = literal.value if isinstance(literal, StringLiteral) else None
            if (field := condition_field(self.layouts, name, operator, text)) is not None:
                self._renames.append((identifier, quote_identifier(field)))
            return
        if name == DOMAIN:
            self._domain(node, literal, top_level=top_level)
        elif name == ENTITY_ID:
            self._entity(node, operator, literal)
        elif not self.layouts.keeps_tag(name):
            raise Refusal(f"the tag {name!r} is not in the optimized layout")
        elif (
            name not in self.layouts.global_tags
            and isinstance(literal, StringLiteral)
            and not variables_in(literal.value)
            and literal.value
            and identity_tag(literal.value) != literal.value
        ):
            # An attribute tag: the optimized one holds the attribute's canonical text.
            raise Refusal(f"the {name} {literal.value!r} is not kept as a tag as is")

    def _domain(self, node: Binary, literal: Expression | None, *, top_level: bool) -> None:
        if not (top_level and node.operator == "=" and isinstance(literal, StringLiteral)):
            raise Refusal(
                "a domain condition is translated only as \"domain\" = '…' joined "
                "to the rest with AND"
            )
        if variables_in(literal.value):
            raise Refusal("the domain comes from a template variable")
        if self.domain is not None and self.domain != literal.value:
            raise Refusal("the query asks for two domains at once")
        if self.domain_node is not None:
            raise Refusal("the domain condition appears twice")
        self.domain = literal.value
        self.domain_node = node

    def _is_tag(self, identifier: Identifier) -> bool:
        if identifier.cast == "tag":
            if identifier.name not in self.layouts.legacy_tags:
                raise Refusal(f"legacy points have no tag {identifier.name!r}")
            return True
        if identifier.cast == "field":
            return False
        return identifier.name in self.layouts.legacy_tags

    def _entity(self, node: Binary, operator: str, literal: Expression | None) -> None:
        if isinstance(literal, StringLiteral) and operator in ("=", "!=", "<>"):
            text, anchors = literal.value, False
        elif isinstance(literal, RegexLiteral) and operator in ("=~", "!~"):
            text, anchors = literal.pattern, True
        elif isinstance(literal, Variable) and operator in ("=~", "!~", "=", "!="):
            # A bare variable: Grafana writes its values in, as a regex or text.
            if all(name in self.entity_variables for name in variables_in(literal.text)):
                return
            raise Refusal(_unknown_variable(variables_in(literal.text)))
        else:
            raise Refusal(f"entity_id {operator} … is not translated")
        names = variables_in(text)
        if not names:
            self._entity_nodes.append(node)
        elif not all(name in self.entity_variables for name in names) or not _only_variables(
            text, anchors=anchors
        ):
            raise Refusal(_unknown_variable(names))

    def rewrite(
        self,
        work: StatementRewrite,
        domain: str | None,
        conditions: list[str] | None = None,
        insert_at: int | None = None,
    ) -> None:
        """Map entity ids to ``domain``, drop the domain condition, add ``conditions``."""
        edits = work.edits
        for node in self._entity_nodes:
            _, literal = sides(node)
            if domain is None:
                raise Refusal("the entities' domain is unknown")
            if isinstance(literal, StringLiteral):
                full = f"{domain}.{literal.value}" if literal.value else ""
                edits.replace(literal.start, literal.end, quote_string(full))
                if literal.value:
                    work.changes.append(f"entity_id '{literal.value}' → '{full}'")
            elif isinstance(literal, RegexLiteral):
                pattern = prefix_object_id_regex(literal.pattern, domain)
                edits.replace(literal.start, literal.end, quote_regex(pattern))
                work.changes.append(f"entity_id /{literal.pattern}/ → /{pattern}/")
        for identifier, replacement in self._renames:
            edits.replace(identifier.start, identifier.end, replacement)
            work.changes.append(f"field {identifier.name} → {replacement}")
        added = " AND ".join(conditions or [])
        where = self.where
        if (domain_node := self.domain_node) is not None:
            if added:
                edits.replace(domain_node.start, domain_node.end, added)
            else:
                self._remove(domain_node, work)
            return
        if not added:
            return
        if where is None:
            assert insert_at is not None
            edits.insert(insert_at, f" WHERE {added}")
        elif isinstance(where, Binary) and where.operator == "OR":
            edits.insert(where.start, f"{added} AND (")
            edits.insert(where.end, ")")
        else:
            edits.insert(where.start, f"{added} AND ")

    def _remove(self, node: Expression, work: StatementRewrite) -> None:
        edits = work.edits
        parent = self._parents.get(id(node))
        if parent is None:
            # The whole clause: drop it, keyword and the space before it included.
            assert self.where_start is not None
            start = self.where_start
            while start > 0 and work.text[start - 1].isspace():
                start -= 1
            edits.replace(start, node.end, "")
            return
        if isinstance(parent, Parenthesized):
            self._remove(parent, work)
            return
        assert isinstance(parent, Binary)
        if parent.lhs is node:
            edits.replace(node.start, parent.rhs.start, "")
        else:
            edits.replace(parent.lhs.end, node.end, "")


def _entity_set(node: Expression) -> frozenset[str] | None:
    """The object ids an OR of ``entity_id = '…'`` conditions allows, else ``None``."""
    if isinstance(node, Parenthesized):
        return _entity_set(node.expression)
    if isinstance(node, Binary) and node.operator == "OR":
        lhs, rhs = _entity_set(node.lhs), _entity_set(node.rhs)
        return None if lhs is None or rhs is None else lhs | rhs
    if isinstance(node, Binary) and node.operator == "=":
        identifier, literal = sides(node)
        if (
            identifier is not None
            and identifier.name == ENTITY_ID
            and identifier.cast != "field"
            and isinstance(literal, StringLiteral)
            and not variables_in(literal.value)
        ):
            return frozenset({literal.value})
    return None


def _only_variables(text: str, *, anchors: bool = False) -> bool:
    rest = VARIABLE.sub("", text)
    if anchors:
        rest = rest.replace("^", "").replace("$", "").replace("(", "").replace(")", "")
        rest = rest.replace("?:", "")
    return rest == ""


def _unknown_variable(names: list[str]) -> str:
    listed = ", ".join(f"${name}" for name in dict.fromkeys(names))
    return (
        f"the entity_id condition uses {listed}, whose values may be legacy object ids: "
        "translate the whole dashboard (its entity_id variables then list full ids) or name "
        "the variable as one that holds full entity ids"
    )

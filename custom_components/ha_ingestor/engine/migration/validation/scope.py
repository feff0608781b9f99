"""What a validation looks at: the transform it checks, the entities selected, and what the
migration's ledger leaves out or allows. No Home Assistant in here.
"""

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ...line_protocol import Point
from ..ledger import MigrationLedger, Span
from ..model import MigrationConfig

type Transform = Callable[[Point], Point | None]


@runtime_checkable
class ReadsFields(Protocol):
    """A transform that says which legacy fields it reads (validation asks for only those)."""

    @property
    def fields_read(self) -> frozenset[str]: ...


class ValidationScope:
    """The entities a validation compares, and how the ledger bends the comparison.

    Entities whose legacy points the cleanup already deleted are left out; on days that held
    optimized points before the migration (protected spans) the optimized layout may hold
    more than the legacy one.
    """

    def __init__(self, config: MigrationConfig, ledger: MigrationLedger | None) -> None:
        self.selects = config.selects
        self._ledger = ledger

    def protected(self, entity: str) -> tuple[Span, ...]:
        """The spans the target held optimized points of ``entity`` in before the migration."""
        return () if self._ledger is None else self._ledger.protected_spans(entity)

    def cleaned(self, entity: str) -> bool:
        """Whether the cleanup deleted legacy points of ``entity`` already."""
        return self._ledger is not None and bool(self._ledger.cleaned.get(entity))

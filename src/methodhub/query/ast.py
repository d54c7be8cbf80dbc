"""The parsed form of an IoT Hub query: frozen dataclasses, no positions, no behaviour beyond naming.

A :class:`Query` is what :func:`methodhub.query.parser.parse` returns and what
:func:`methodhub.query.render.render` turns back into text. Paths are already normalised by the
parser: a ``devices.jobs.`` prefix is stripped in ``devices.jobs`` queries, and top-level system
names are spelled canonically (``DeviceId`` -> ``deviceId``), so two queries that mean the same
compare equal.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias


class Collection(enum.Enum):
    """What a query's FROM names."""

    DEVICES = "devices"
    MODULES = "devices.modules"
    JOBS = "devices.jobs"


class ComparisonOp(enum.Enum):
    """A comparison operator; ``<>`` and ``!=`` are one operator (NE), rendered ``!=``."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    def flipped(self) -> ComparisonOp:
        """The operator with its operands swapped: ``a < b`` is ``b > a``."""
        return _FLIPPED[self]


_FLIPPED = {
    ComparisonOp.EQ: ComparisonOp.EQ,
    ComparisonOp.NE: ComparisonOp.NE,
    ComparisonOp.LT: ComparisonOp.GT,
    ComparisonOp.LE: ComparisonOp.GE,
    ComparisonOp.GT: ComparisonOp.LT,
    ComparisonOp.GE: ComparisonOp.LE,
}


class TextFunction(enum.Enum):
    """The string tests twin queries accept (not the routing language's STARTS_WITH)."""

    STARTSWITH = "STARTSWITH"
    ENDSWITH = "ENDSWITH"


LiteralValue: TypeAlias = str | int | float | bool | None
"""A constant: a string, a number (int when written without a point, else float), true, false, null."""


@dataclass(frozen=True)
class Path:
    """A property path: ``properties.reported.firmware`` is ``("properties", "reported", "firmware")``.
    A ``$`` segment keeps its ``$`` (``("properties", "desired", "$version")``)."""

    segments: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.segments)


@dataclass(frozen=True, eq=False)
class Literal:
    """A constant. Equality includes the Python type, so ``true`` is not ``1`` and ``2`` is not
    ``2.0`` (the round-trip tests compare ASTs exactly)."""

    value: LiteralValue

    def _key(self) -> tuple[type, LiteralValue]:
        return (type(self.value), self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Literal) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


Operand: TypeAlias = Path | Literal


@dataclass(frozen=True)
class Comparison:
    """``left op right``; either side may be a path or a constant."""

    op: ComparisonOp
    left: Operand
    right: Operand


@dataclass(frozen=True)
class InList:
    """``path IN [c, ...]`` (``negated``: ``NIN``). At least one constant."""

    path: Path
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsDefined:
    """``IS_DEFINED(path)``: the path exists (an explicit ``null`` counts)."""

    path: Path


@dataclass(frozen=True)
class TextMatch:
    """``STARTSWITH(path, 'text')`` / ``ENDSWITH(path, 'text')`` (case-sensitive)."""

    function: TextFunction
    path: Path
    text: str


@dataclass(frozen=True)
class And:
    """Two or more conditions that must all hold, in the order written."""

    operands: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    """Two or more conditions of which one must hold, in the order written."""

    operands: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    operand: Condition


Condition: TypeAlias = Comparison | InList | IsDefined | TextMatch | And | Or | Not


@dataclass(frozen=True)
class PathProjection:
    """``path [AS alias]``; its result property is named ``alias`` or the path's last segment."""

    path: Path
    alias: str | None = None


@dataclass(frozen=True)
class CountProjection:
    """``COUNT() [AS alias]``; unnamed counts are ``$1``, ``$2``, ... in the order written."""

    alias: str | None = None


Projection: TypeAlias = PathProjection | CountProjection


@dataclass(frozen=True)
class Star:
    """``SELECT *``: whole documents."""


STAR = Star()


@dataclass(frozen=True)
class Query:
    """``SELECT [TOP n] select FROM from_ [WHERE where] [GROUP BY group_by]``."""

    select: Star | tuple[Projection, ...]
    from_: Collection
    where: Condition | None = None
    group_by: tuple[Path, ...] = ()
    top: int | None = None

    @property
    def is_aggregate(self) -> bool:
        """One row per group (or one row in all) rather than one per document."""
        return bool(self.group_by) or (
            not isinstance(self.select, Star) and any(isinstance(p, CountProjection) for p in self.select)
        )

    @property
    def item_type(self) -> str:
        """The ``x-ms-item-type`` of the answer: ``Twin`` for whole twins, ``DeviceJob`` for
        ``devices.jobs`` rows, ``Raw`` for projections and aggregates (C# ``QueryResultType`` names)."""
        if self.from_ is Collection.JOBS:
            return "DeviceJob"
        if isinstance(self.select, Star) and not self.is_aggregate:
            return "Twin"
        return "Raw"


def result_names(projections: tuple[Projection, ...]) -> tuple[str, ...]:
    """The result property each projection fills, in order (the parser rejects duplicates)."""
    names: list[str] = []
    unnamed = 0
    for projection in projections:
        if projection.alias is not None:
            names.append(projection.alias)
        elif isinstance(projection, PathProjection):
            names.append(projection.path.segments[-1])
        else:
            unnamed += 1
            names.append(f"${unnamed}")
    return tuple(names)


TWIN_FIELDS = (
    "deviceId",
    "moduleId",
    "etag",
    "deviceEtag",
    "version",
    "status",
    "statusReason",
    "statusUpdateTime",
    "connectionState",
    "lastActivityTime",
    "cloudToDeviceMessageCount",
    "authenticationType",
    "x509Thumbprint",
    "modelId",
    "capabilities",
    "deviceScope",
    "parentScopes",
    "configurations",
    "tags",
    "properties",
)
"""A twin's top-level properties (swagger Twin, plus modelId and configurations). A query may
spell them in any case (``DeviceId``, the C# JobsSample's spelling): the parser rewrites them."""

JOB_ROW_FIELDS = (
    "deviceId",
    "moduleId",
    "jobId",
    "jobType",
    "status",
    "startTimeUtc",
    "endTimeUtc",
    "createdDateTimeUtc",
    "lastUpdatedDateTimeUtc",
    "outcome",
    "error",
)
"""A ``devices.jobs`` row's fields (C# ``DeviceJob``); a ``devices.jobs`` query may test only these."""

JOB_FIELD_ALIASES = {"createdTimeUtc": "createdDateTimeUtc"}
"""Names the jobs documentation uses for a row field it spells otherwise."""

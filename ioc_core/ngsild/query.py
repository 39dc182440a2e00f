"""Which entities a request or a subscription asks for: types, ids, an id pattern, attributes,
the NGSI-LD query language (``q``) and geo-queries, over entities in the normalized form.

``q`` (ETSI GS CIM 009, 4.9): terms joined by ``;`` (and) and ``|`` (or), ``;`` binding tighter,
in parentheses as needed; a term is an attribute path (``attr``, ``attr.subAttr``,
``attr[key]``), alone (it exists), after ``!`` (it does not), or compared with ``==``, ``!=``,
``>``, ``>=``, ``<``, ``<=``, ``~=`` (a regular expression) or ``!~=``; ``==`` and ``!=`` take a
range (``1..5``) or a list (``"a","b"``). Names are the caller's: ``resolve`` turns each into the
IOC's before anything is matched.
"""

from __future__ import annotations

import math
import re
import re._constants as re_constants  # the parse tree's names: refusing patterns that backtrack for ever
import re._parser as re_parser
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import shapely
import shapely.errors
import shapely.ops
from shapely.geometry import shape

from ioc_core.ngsild.entities import Entity


class QueryError(ValueError):
    """A query that cannot be understood: a 400 BadRequestData with this detail."""


OPERATORS = ("==", "!=", ">=", "<=", "!~=", "~=", ">", "<")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


@dataclass(slots=True)
class Term:
    attr: str
    subs: list[str]  # sub-attribute path after the attribute
    keys: list[str]  # [key] path into a compound value
    op: str | None  # None: the attribute exists (``negate``: it does not)
    values: list[Any] = field(default_factory=list)
    low: Any = None  # a range's ends
    high: Any = None
    negate: bool = False
    pattern: re.Pattern | None = None


@dataclass(slots=True)
class Junction:
    op: str  # ";" and, "|" or
    parts: list[Term | Junction]


Node = Term | Junction


MAX_DEPTH = 32
MAX_PATTERN = 256  # an idPattern's or a ~= pattern's length


class _Parser:
    def __init__(self, text: str):
        self.text, self.pos, self.depth = text, 0, 0

    def parse(self) -> Node:
        if not self.text.strip():
            raise QueryError("q is empty")
        node = self._or()
        if self.pos != len(self.text):
            raise QueryError(f"q: unexpected {self.text[self.pos :]!r} at {self.pos}")
        return node

    def _or(self) -> Node:
        parts = [self._and()]
        while self._peek("|"):
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Junction("|", parts)

    def _and(self) -> Node:
        parts = [self._unit()]
        while self._peek(";"):
            self.pos += 1
            parts.append(self._unit())
        return parts[0] if len(parts) == 1 else Junction(";", parts)

    def _unit(self) -> Node:
        if self._peek("("):
            self.pos += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryError(f"q: more than {MAX_DEPTH} parentheses deep")
            node = self._or()
            self.depth -= 1
            if not self._peek(")"):
                raise QueryError(f"q: a ')' is missing at {self.pos}")
            self.pos += 1
            return node
        return self._term()

    def _peek(self, char: str) -> bool:
        return self.text.startswith(char, self.pos)

    def _term(self) -> Term:
        negate = self._peek("!") and not self._peek("!=") and not self._peek("!~=")
        if negate:
            self.pos += 1
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in "=!<>~;|()":
            self.pos += 1
        path = self.text[start : self.pos].strip()
        if not path:
            raise QueryError(f"q: an attribute is missing at {start}")
        attr, subs, keys = split_path(path)
        op = next((o for o in OPERATORS if self.text.startswith(o, self.pos)), None)
        if op is None or negate:
            if op is not None:
                raise QueryError("q: '!' stands only before an attribute alone")
            return Term(attr, subs, keys, None, negate=negate)
        self.pos += len(op)
        raw = self._value_text()
        term = Term(attr, subs, keys, op)
        if op in ("~=", "!~="):
            try:
                term.pattern = safe_pattern("q", _unquote(raw))
            except re.error as exc:
                raise QueryError(f"q: {raw!r} is not a regular expression: {exc}") from exc
        elif ".." in raw and op in ("==", "!="):
            low, _, high = raw.partition("..")
            term.low, term.high = scalar(low), scalar(high)
        elif op in ("==", "!="):
            term.values = [scalar(v) for v in _split_list(raw)]
        else:
            term.values = [scalar(raw)]
        return term

    def _value_text(self) -> str:
        start, quoted = self.pos, False
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"' and (self.pos == start or self.text[self.pos - 1] != "\\"):
                quoted = not quoted
            elif not quoted and char in ";|)":
                break
            self.pos += 1
        raw = self.text[start : self.pos].strip()
        if not raw:
            raise QueryError(f"q: a value is missing at {start}")
        return raw


def split_path(path: str) -> tuple[str, list[str], list[str]]:
    """``attr.sub[key]`` as its parts; an attribute given as a full IRI keeps its dots."""
    base, *rest = path.split("[")
    keys = []
    for part in rest:
        if not part.endswith("]"):
            raise QueryError(f"q: {path!r} has an unclosed '['")
        keys.append(part[:-1])
    if "://" in base:
        return base, [], keys
    attr, *subs = base.split(".")
    return attr, subs, keys


def _split_list(raw: str) -> list[str]:
    items, start, quoted = [], 0, False
    for i, char in enumerate(raw):
        if char == '"' and (i == 0 or raw[i - 1] != "\\"):
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(raw[start:i])
            start = i + 1
    items.append(raw[start:])
    return [i.strip() for i in items]


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"')
    return raw


def scalar(raw: str) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"')
    if raw.startswith('"'):
        raise QueryError(f"q: the string {raw} lacks its closing quote")
    if raw[:1] in ("<", ">", "=", "!", "~"):
        raise QueryError(f"q: {raw!r} is not a value")
    if raw in ("true", "false"):
        return raw == "true"
    if _NUMBER.match(raw):
        return float(raw)
    return raw  # a date-time, or a word


def parse_q(text: str) -> Node:
    return _Parser(text).parse()


def rename(node: Node, to_ioc: Callable[[str], str]) -> None:
    """The caller's attribute names in ``node`` as the IOC's."""
    if isinstance(node, Term):
        node.attr = to_ioc(node.attr)
    else:
        for part in node.parts:
            rename(part, to_ioc)


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _comparable(left: Any, right: Any) -> tuple[Any, Any] | None:
    if isinstance(left, bool) or isinstance(right, bool):
        return (left, right) if isinstance(left, bool) and isinstance(right, bool) else None
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left, right
    if isinstance(left, str) and isinstance(right, str):
        a, b = _datetime(left), _datetime(right)
        if a is not None and b is not None and (a.tzinfo is None) == (b.tzinfo is None):
            return a, b
        return left, right
    return None


def _compare(op: str, left: Any, right: Any) -> bool:
    pair = _comparable(left, right)
    if pair is None:
        return op == "!="
    a, b = pair
    try:
        return {
            "==": a == b,
            "!=": a != b,
            ">": a > b,
            ">=": a >= b,
            "<": a < b,
            "<=": a <= b,
        }[op]
    except TypeError:
        return False


_MISSING = object()


def _resolve(entity: Entity, term: Term) -> Any:
    attr = entity.attrs.get(term.attr)
    if attr is None:
        return _MISSING
    for sub in term.subs:
        if not isinstance(attr, dict) or sub not in attr:
            return _MISSING
        attr = attr[sub]
    if isinstance(attr, dict) and ("value" in attr or "object" in attr):
        value = attr["value"] if "value" in attr else attr["object"]
    else:
        value = attr  # observedAt, unitCode and other plain sub-attributes
    for key in term.keys:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _term_matches(entity: Entity, term: Term) -> bool:
    value = _resolve(entity, term)
    if term.op is None:
        return (value is _MISSING) == term.negate
    if value is _MISSING:
        return False
    values = value if isinstance(value, list) else [value]
    if term.pattern is not None:
        found = any(isinstance(v, str) and term.pattern.search(v) for v in values)
        return found if term.op == "~=" else not found
    if term.low is not None or term.high is not None:
        inside = any(_compare(">=", v, term.low) and _compare("<=", v, term.high) for v in values)
        return inside if term.op == "==" else not inside
    if term.op == "==":
        return any(_compare("==", v, w) for v in values for w in term.values)
    if term.op == "!=":
        return not any(_compare("==", v, w) for v in values for w in term.values)
    return any(_compare(term.op, v, term.values[0]) for v in values)


def matches_q(entity: Entity, node: Node) -> bool:
    if isinstance(node, Term):
        return _term_matches(entity, node)
    if node.op == ";":
        return all(matches_q(entity, p) for p in node.parts)
    return any(matches_q(entity, p) for p in node.parts)


GEORELS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")
GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
EARTH_M = 6_371_008.8


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(h))


@dataclass(slots=True)
class GeoQuery:
    georel: str
    geometry: Any  # shapely
    geoproperty: str = "location"
    max_m: float | None = None
    min_m: float | None = None
    center: tuple[float, float] | None = None  # near a Point: distances between points, no shapes
    box: tuple[float, float] | None = None  # (degrees of latitude, of longitude) that maxDistance spans at most

    def matches(self, entity: Entity) -> bool:
        if self.center is not None and self.geoproperty == "location" and entity.point is not None:
            return self._near_point(entity.point)
        if self.geoproperty == "location" and entity.point is not None:
            here = shapely.Point(entity.point)
        else:
            attr = entity.attrs.get(self.geoproperty)
            if not isinstance(attr, dict) or not isinstance(attr.get("value"), dict):
                return False
            try:
                here = shape(attr["value"])
            except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException):
                return False
        if self.georel == "near":
            near, far = shapely.ops.nearest_points(here, self.geometry)
            distance = haversine_m((near.x, near.y), (far.x, far.y))
            return (self.max_m is None or distance <= self.max_m) and (self.min_m is None or distance >= self.min_m)
        return bool(getattr(here, self.georel)(self.geometry))  # shapely's predicates have NGSI-LD's names

    def _near_point(self, point: tuple[float, float]) -> bool:
        """Near a point, for an entity at a point: what lies outside the box that maxDistance spans
        is far without a distance computed."""
        assert self.center is not None
        if self.box is not None and (
            abs(point[1] - self.center[1]) > self.box[0] or abs(point[0] - self.center[0]) > self.box[1]
        ):
            return False
        distance = haversine_m(point, self.center)
        return (self.max_m is None or distance <= self.max_m) and (self.min_m is None or distance >= self.min_m)


def parse_geo(georel: str, geometry: str | None, coordinates: str | None, geoproperty: str | None) -> GeoQuery:
    rel, *modifiers = georel.split(";")
    if rel not in GEORELS:
        raise QueryError(f"georel {rel!r} is not one of {', '.join(GEORELS)}")
    if geometry not in GEOMETRIES:
        raise QueryError(f"geometry must be one of {', '.join(GEOMETRIES)}")
    if not coordinates:
        raise QueryError("coordinates are required with georel")
    try:
        coords = orjson.loads(coordinates) if isinstance(coordinates, str) else coordinates
        shaped = shape({"type": geometry, "coordinates": coords})
        if shaped.is_empty:
            raise QueryError(f"coordinates hold no {geometry}")
        if not shaped.is_valid and geometry in ("Polygon", "MultiPolygon"):
            raise QueryError(f"the {geometry} in coordinates is not valid: {shapely.is_valid_reason(shaped)}")
    except (orjson.JSONDecodeError, ValueError, TypeError, IndexError, shapely.errors.GEOSException) as exc:
        if isinstance(exc, QueryError):
            raise
        raise QueryError(f"coordinates are not a {geometry}: {exc}") from exc
    query = GeoQuery(rel, shaped, geoproperty or "location")
    if rel == "near":
        for modifier in modifiers:
            name, _, number = modifier.partition("==")
            try:
                distance = float(number)
            except ValueError as exc:
                raise QueryError(f"georel: {modifier!r} is not maxDistance==m or minDistance==m") from exc
            if name == "maxDistance":
                query.max_m = distance
            elif name == "minDistance":
                query.min_m = distance
            else:
                raise QueryError(f"georel: {modifier!r} is not maxDistance==m or minDistance==m")
        if query.max_m is None and query.min_m is None:
            raise QueryError("georel near needs maxDistance or minDistance")
        if geometry == "Point":
            query.center = (shaped.x, shaped.y)
            if query.max_m is not None:
                lat_span = math.degrees(query.max_m / EARTH_M) * 1.001
                cos_lat = math.cos(math.radians(min(89.0, abs(shaped.y) + lat_span)))
                query.box = (lat_span, min(360.0, lat_span / cos_lat))
    elif modifiers:
        raise QueryError(f"georel {rel!r} takes no modifiers")
    return query


@dataclass(slots=True)
class Selection:
    """What to match, in the IOC's names."""

    types: frozenset[str] | None = None
    ids: frozenset[str] | None = None
    id_pattern: re.Pattern | None = None
    attrs: frozenset[str] | None = None
    q: Node | None = None
    geo: GeoQuery | None = None

    def matches(self, entity: Entity) -> bool:
        if self.types is not None and entity.type not in self.types:
            return False
        if self.ids is not None and entity.id not in self.ids:
            return False
        if self.id_pattern is not None and not self.id_pattern.search(entity.id):
            return False
        if self.attrs is not None and self.attrs.isdisjoint(entity.attrs):
            return False
        if self.q is not None and not matches_q(entity, self.q):
            return False
        return self.geo is None or self.geo.matches(entity)

    def select(self, entities: Iterable[Entity]) -> list[Entity]:
        return [e for e in entities if self.matches(e)]


def id_pattern(text: str) -> re.Pattern:
    return safe_pattern("idPattern", text)


def safe_pattern(name: str, text: str) -> re.Pattern:
    """A caller's regular expression, if it cannot backtrack for ever: no repetition of something
    that repeats, no back-references (Python's ``re`` has no time limit, and these run over every
    entity on the API's event loop)."""
    if len(text) > MAX_PATTERN:
        raise QueryError(f"{name}: a pattern is {MAX_PATTERN} characters at most")
    try:
        compiled = re.compile(text)
        tree = re_parser.parse(text)
    except re.error as exc:
        raise QueryError(f"{name} {text!r} is not a regular expression: {exc}") from exc
    if _explosive(tree, inside_repeat=False):
        raise QueryError(f"{name} {text!r}: nested repetition and back-references are not accepted")
    return compiled


def _explosive(items: Any, inside_repeat: bool) -> bool:
    """A back-reference, or inside a repetition another repetition or an alternation."""
    for op, arg in items:
        if op in (re_constants.GROUPREF, re_constants.GROUPREF_EXISTS):
            return True
        if op in (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT, re_constants.POSSESSIVE_REPEAT):
            _, high, sub = arg
            repeats = high is re_constants.MAXREPEAT or high > 1
            if (repeats and inside_repeat) or _explosive(sub, inside_repeat or repeats):
                return True
        elif op == re_constants.BRANCH:
            if inside_repeat or any(_explosive(branch, inside_repeat) for branch in arg[1]):
                return True
        elif op in _GROUPS and _explosive(arg[-1], inside_repeat):  # the group's or assertion's own pattern
            return True
    return False


_GROUPS = (re_constants.SUBPATTERN, re_constants.ASSERT, re_constants.ASSERT_NOT)

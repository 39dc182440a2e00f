"""A camera's analytics configuration: what to detect, where to count and what to watch for.

Stored in ``cameras.analytics`` and validated here, so that the API refuses a bad line or zone with
a clear error and the vision worker reads only what it can use. Coordinates are normalized (0..1
of the frame's width and height), so one configuration survives a change of stream resolution.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Names become parts of metric names (``{line}_{class}_in``), so they are short identifiers.
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,23}$", examples=["northbound"])]
Point = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]
ObjectClass = Literal["person", "bicycle", "car", "motorcycle", "bus", "truck"]

VEHICLES: frozenset[str] = frozenset({"bicycle", "car", "motorcycle", "bus", "truck"})
DEFAULT_CLASSES: tuple[ObjectClass, ...] = ("person", "bicycle", "car", "motorcycle", "bus", "truck")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Line(_Strict):
    """A counting line: objects whose bottom centre crosses it are counted by class and direction.

    ``in`` is a crossing from the left of the line, walking from its first point to its second,
    to its right (supervision's convention).
    """

    name: Name
    points: tuple[Point, Point]
    allowed: Literal["in", "out"] | None = Field(
        None, description="Wrong-way driving: a vehicle crossing the other way raises a wrong_way event."
    )


class SpeedZone(_Strict):
    """A stretch of road calibrated for speeds: four points on the road and the real distances
    between them. The points go around the stretch: the far edge from left to right, then the near
    edge from right to left (``points[0]``-``points[1]`` and ``points[3]``-``points[2]`` are
    ``width_m`` apart, ``points[1]``-``points[2]`` and ``points[0]``-``points[3]`` ``length_m``).
    Lane markings are the usual yardstick: a lane's width, a dash and its gap."""

    name: Name
    points: tuple[Point, Point, Point, Point]
    length_m: float = Field(gt=0, le=1000, description="Along the road: from the far edge to the near edge.")
    width_m: float = Field(gt=0, le=200, description="Across the road.")
    limit_kmh: float | None = Field(None, gt=0, le=300, description="Speeding: a vehicle faster than this.")


class Zone(_Strict):
    """A polygon whose occupancy is counted, and the conditions watched inside it."""

    name: Name
    points: list[Point] = Field(min_length=3, max_length=64)
    max_dwell_s: float | None = Field(
        None, gt=0, description="No stopping: a vehicle in the zone longer than this is a stopped vehicle."
    )
    max_people: int | None = Field(None, gt=0, description="Crowding: more people than this in the zone.")
    max_vehicles: int | None = Field(None, gt=0, description="Congestion: more vehicles than this in the zone.")
    restricted: bool = Field(False, description="Intrusion: any person or vehicle in the zone.")


class CameraAnalytics(_Strict):
    classes: list[ObjectClass] = Field(
        default_factory=lambda: list(DEFAULT_CLASSES), min_length=1, description="Classes detected and counted."
    )
    analysis_fps: float = Field(5.0, gt=0, le=30, description="Frames analysed per second, whatever the stream's rate.")
    lines: list[Line] = Field(default_factory=list, max_length=16)
    zones: list[Zone] = Field(default_factory=list, max_length=16)
    speed_zones: list[SpeedZone] = Field(default_factory=list, max_length=8)

    @field_validator("lines", "zones", "speed_zones")
    @classmethod
    def _unique_names(cls, items: list) -> list:
        names = [i.name for i in items]
        if len(names) != len(set(names)):
            raise ValueError(f"names must be unique, got {names}")
        return items

"""Which unit a written address names, in today's form or in the pre-2025 one people still write.

Since the 2025 reform Da Nang's 94 units each took in several former wards and communes (and the
former Quảng Nam province), and many people still write "Phường Thạch Thang, Quận Hải Châu". The
units' seed data lists each unit's former units (``units.former_units``), so a former name leads
to today's unit. An address is matched on its folded form (no diacritics, no case, the usual
abbreviations written out: "P." for phường, "Q." for quận); a former district's name ("Quận Sơn
Trà") is dropped first, since it would otherwise match a ward of the same name today. A former
commune split between two units (Xã Hòa Liên) gives both, and the person chooses on the map.
The place of an address without a pin is the unit's people's committee.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_KINDS = {"phuong": "ward", "xa": "commune", "thi tran": "town", "dac khu": "special_zone"}
_ABBREVIATIONS = [
    (r"\bp\s*\.\s*", "phuong "),
    (r"\bq\s*\.\s*", "quan "),
    (r"\bx\s*\.\s*", "xa "),
    (r"\btt\s*\.\s*", "thi tran "),
    (r"\btp\s*\.?\s*", "thanh pho "),
    (r"\bh\s*\.\s*", "huyen "),
]
_FORMER_DISTRICT = re.compile(r"\b(quan|huyen|thi xa|thanh pho)\s+(?!da nang\b)([a-z]+(?: [a-z]+){0,2})")


def fold(text: str) -> str:
    """Lower case ASCII words: ``Phường Hòa Cường Bắc`` -> ``phuong hoa cuong bac``."""
    text = text.replace("Đ", "D").replace("đ", "d")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    for pattern, replacement in _ABBREVIATIONS:
        text = re.sub(pattern, replacement, text)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


@dataclass(frozen=True, slots=True)
class Place:
    unit_id: str
    unit_name: str
    written: str  # the name the address matched, as the seed data writes it
    former: bool  # a name from before the 2025 reform
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class _Name:
    folded: str  # without its kind: "thach thang"
    kind: str | None  # "phuong", "xa", ...: None for today's bare names
    place: Place


class Gazetteer:
    """Every unit's name today and its former units' names, folded for matching."""

    def __init__(self, units: list[tuple[str, str, str | None, float, float]]) -> None:
        """``units``: (id, name, former units as "Phường A, Xã B", committee lat, committee lon)."""
        names: list[_Name] = []
        for unit_id, name, former, lat, lon in units:
            names.append(_Name(fold(name), None, Place(unit_id, name, name, False, lat, lon)))
            for written in (former or "").split(","):
                written = written.strip()
                folded = fold(written)
                kind = next((k for k in sorted(_KINDS, key=len, reverse=True) if folded.startswith(k + " ")), None)
                if kind is None:  # "Toàn bộ huyện Hoàng Sa": no ward of its own
                    continue
                names.append(_Name(folded[len(kind) + 1 :], kind, Place(unit_id, name, written, True, lat, lon)))
        # Longer names first: "hoa cuong bac" must win over "hoa cuong".
        self._names = sorted(names, key=lambda n: -len(n.folded))

    def find(self, address: str, limit: int = 5) -> list[Place]:
        """The units the address names, best first: a name written with its kind ("phường X")
        before a bare one, a longer name before a shorter one; each unit once."""
        text = _FORMER_DISTRICT.sub(" ", fold(address))
        text = f" {' '.join(text.split())} "
        scored: list[tuple[int, int, Place]] = []
        for n in self._names:
            at = text.find(f" {n.folded} ")
            if at < 0:
                continue
            with_kind = n.kind is not None and text[:at].endswith(f" {n.kind}")
            if n.kind is not None and not with_kind and any(text[:at].endswith(f" {k}") for k in _KINDS):
                continue  # "xã Phước Ninh" is not "phường Phước Ninh"
            scored.append((0 if with_kind else 1, -len(n.folded), n.place))
        seen: set[str] = set()
        places = []
        for _, _, place in sorted(scored, key=lambda s: (s[0], s[1])):
            if place.unit_id not in seen:
                seen.add(place.unit_id)
                places.append(place)
        return places[:limit]

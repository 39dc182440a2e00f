"""Addresses as people write them, today's form or the pre-2025 one, to the unit that handles them."""

import orjson
import pytest

from ioc_core.addresses import Gazetteer, fold
from ioc_core.settings import Settings
from ioc_core.units import slug


@pytest.fixture(scope="module")
def gazetteer() -> Gazetteer:
    units = orjson.loads((Settings().shared_dir / "geo" / "danang_units_2025.json").read_bytes())["commune_ward_list"]
    return Gazetteer(
        [
            (
                slug(u["new_commune_ward"]),
                u["new_commune_ward"],
                u["merged_communes_wards"],
                u["location"]["latitude"],
                u["location"]["longitude"],
            )
            for u in units
        ]
    )


def ids(places) -> list[str]:
    return [p.unit_id for p in places]


def test_folding_drops_marks_and_writes_out_abbreviations() -> None:
    assert fold("P. Hòa Cường Bắc, Q.Hải Châu, TP Đà Nẵng") == "phuong hoa cuong bac quan hai chau thanh pho da nang"


@pytest.mark.parametrize(
    ("address", "unit"),
    [
        ("12 Lê Lợi, Phường Thạch Thang, Quận Hải Châu, Đà Nẵng", "hai-chau"),
        ("45 Núi Thành, P. Hòa Cường Bắc, Q. Hải Châu", "hoa-cuong"),
        ("Phường An Hải Bắc, Quận Sơn Trà", "an-hai"),  # not Sơn Trà ward: the district is dropped
        ("Phường Minh An, Thành phố Hội An, Tỉnh Quảng Nam", "hoi-an"),
        ("số 3 Bạch Đằng, phường Hải Châu", "hai-chau"),  # today's form
    ],
)
def test_an_address_in_either_form_names_todays_unit(gazetteer: Gazetteer, address: str, unit: str) -> None:
    assert ids(gazetteer.find(address))[0] == unit


def test_a_kind_written_tells_two_units_of_one_name_apart(gazetteer: Gazetteer) -> None:
    assert ids(gazetteer.find("Phường Phước Ninh, Quận Hải Châu")) == ["hai-chau"]
    assert ids(gazetteer.find("Xã Phước Ninh, Huyện Nông Sơn"))[0] == "que-phuoc"


def test_a_former_commune_split_in_two_gives_both(gazetteer: Gazetteer) -> None:
    assert set(ids(gazetteer.find("Xã Hòa Liên, Huyện Hòa Vang"))) == {"hai-van", "lien-chieu"}


def test_an_address_that_names_no_unit_finds_none(gazetteer: Gazetteer) -> None:
    assert gazetteer.find("221B Baker Street, London") == []

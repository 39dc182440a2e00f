"""A screen's position as the API gives it and takes it back: anything else is refused."""

import pytest

from ioc_api.feed import Position, PositionError


def test_a_position_survives_its_text_form() -> None:
    position = Position.of_snapshot("7312", "100:105:101,103")
    assert position == Position("7312", 100, 105, (101, 103))
    assert Position.parse(str(position), "7312") == position
    assert position.unseen() == {"xmax": "105", "xip": ["101", "103"]}


@pytest.mark.parametrize(
    "text",
    [None, 12, "", "7312", "7312/", "7312/a:b:", "7312/105:100:", "7312/100:105:99", "7312/100:105:105", "7312/1:2:x"],
)
def test_a_position_the_server_never_gave_is_refused(text: object) -> None:
    with pytest.raises(PositionError, match="not a position this server gave"):
        Position.parse(text, "7312")


def test_a_position_of_another_database_is_refused() -> None:
    with pytest.raises(PositionError, match="another database"):
        Position.parse("9999/100:105:", "7312")

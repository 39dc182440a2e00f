"""Rule parameters: defaults, hysteresis on the safe side, and the checks ingest relies on."""

import pytest
from pydantic import ValidationError

from ioc_core.rules import parse_params


def test_threshold_hysteresis_defaults_to_the_limit_and_must_be_on_the_safe_side() -> None:
    above = parse_params("threshold", {"op": "above", "value": 50, "clear": 40})
    assert above.breaches(50.1) and not above.breaches(50) and above.clears(39.9) and not above.clears(45)
    below = parse_params("threshold", {"op": "below", "value": 5})
    assert below.clear == 5 and below.breaches(4) and below.clears(6)
    with pytest.raises(ValidationError, match="safe side"):
        parse_params("threshold", {"op": "below", "value": 5, "clear": 3})


def test_rate_change_follows_its_direction_and_clears_at_half_by_default() -> None:
    up = parse_params("rate", {"direction": "up", "delta": 0.2, "window_s": 900})
    assert up.clear_delta == 0.1 and up.change(1.35, 1.0, 1.4) == pytest.approx(0.35)
    down = parse_params("rate", {"direction": "down", "delta": 0.2, "window_s": 900})
    assert down.change(1.0, 0.9, 1.3) == pytest.approx(0.3)
    with pytest.raises(ValidationError):
        parse_params("rate", {"direction": "up", "delta": 0, "window_s": 900})


def test_unknown_types_and_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_params("sideways", {})
    with pytest.raises(ValidationError):
        parse_params("camera", {"event": "Stopped Vehicle"})


def test_each_module_of_the_package_is_one_rule_type_the_api_validates_and_documents() -> None:
    import pkgutil

    import ioc_core.rules as package
    from ioc_core.rules import TYPES, ClockType, EventType, ReadingType, describe_params

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - {"base"}
    assert {type(t).__module__.rsplit(".", 1)[1] for t in TYPES.values()} == modules
    documented = describe_params()
    for name, rule_type in TYPES.items():
        assert isinstance(rule_type, ReadingType | EventType | ClockType)
        assert rule_type.Params.model_fields["type"].default == name
        assert f"{name}: {{" in documented
        with pytest.raises(ValidationError):  # its own parameters are checked, not just any dict
            parse_params(name, {"no_such_parameter": 1})

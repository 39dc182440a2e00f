"""Schemathesis against the API's own OpenAPI document: requests generated from it, valid and
not, on every operation. None may get a 5xx, and every refusal is a problem document that says
why. The API runs on a database and a broker of its own: the fuzzer registers, changes and
deletes whatever it likes."""

from collections.abc import Iterator

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from bench.scratch import scratch_stack
from ioc_api.cli import create_token, create_user
from tests.support import start_api


@pytest.fixture(scope="module")
def fuzzed_api() -> Iterator[tuple[str, dict[str, str]]]:
    """(base URL, an admin's headers) of an API on a scratch database."""
    with scratch_stack("ioc_fuzz") as (url, broker):
        with psycopg.connect(url, autocommit=True) as conn:
            create_user(conn, "fuzz-admin", "admin", [], None)
            token = create_token(conn, "fuzz-admin", "fuzz", 1)
            conn.execute(
                "INSERT INTO sensors (id, kind, unit_id, lat, lon) VALUES ('fz-s', 'water', 'hai-chau', 16.06, 108.22)"
            )
            conn.execute("INSERT INTO cameras (id, unit_id, lat, lon) VALUES ('fz-c', 'hai-chau', 16.06, 108.22)")
        env = {"IOC_DATABASE_URL": url, "IOC_MQTT_URL": broker.url_for("api"), "IOC_LOG_LEVEL": "WARNING"}
        api = start_api(env)
        try:
            yield f"http://127.0.0.1:{api.port}", {"Authorization": f"Bearer {token}"}
        finally:
            api.stop()


# These would revoke the token the fuzzing runs with (tests/ioc_api/test_security.py has them).
REVOKING = {"POST /api/v1/auth/logout", "DELETE /api/v1/auth/tokens/{token_id}"}


def test_no_request_gets_a_server_error_and_every_refusal_says_why(fuzzed_api: tuple[str, dict[str, str]]) -> None:
    base, admin = fuzzed_api
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    answers: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.label not in REVOKING]
    assert len(operations) > 30
    for operation in operations:
        codes = answers.setdefault(operation.label, set())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case) -> None:
                response = case.call(base_url=base, headers=admin, timeout=10)
                codes.add(response.status_code)  # noqa: B023 (called before the loop moves on)
                where = f"{case.method} {case.formatted_path}: {response.status_code}"
                assert response.status_code < 500, f"{where} {response.text[:300]}"
                if response.status_code >= 400 and case.path.startswith("/open311/"):
                    # Open311's own error format (tests/ioc_api/test_open311.py checks both forms)
                    if case.formatted_path.endswith(".json") and response.status_code != 422:
                        assert all(e["code"] and e["description"] for e in response.json()), where
                elif response.status_code >= 400 and case.path.startswith("/ngsi-ld/"):
                    # NGSI-LD's ProblemDetails: application/json, a type from the specification's list
                    assert response.headers["content-type"] == ["application/json"], where
                    problem = response.json()
                    assert problem["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/"), where
                    assert problem["detail"], where
                elif response.status_code >= 400:
                    assert response.headers["content-type"] == ["application/problem+json"], where
                    assert response.json()["detail"], where

            try:
                one()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing in it can be made invalid
            except (AssertionError, ExceptionGroup) as exc:  # several distinct failures come as a group
                failures += [str(e).splitlines()[0] for e in getattr(exc, "exceptions", [exc])]
    assert failures == [], "\n".join(failures)
    # The token held: every operation was answered as something other than "who are you?".
    assert [label for label, codes in answers.items() if codes <= {401}] == []


def test_numbers_past_64_bits_are_refused_not_failed(fuzzed_api: tuple[str, dict[str, str]]) -> None:
    """Hypothesis rarely draws integers this large: every integer parameter of every operation
    gets one, in turn."""
    base, admin = fuzzed_api
    spec = httpx.get(f"{base}/openapi.json").json()
    tried = 0
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            params = operation.get("parameters", [])
            for target in [p for p in params if _type(p) == "integer"]:
                url = path
                query = {}
                for p in params:
                    value = 2**70 if p is target else ("x" if _type(p) == "string" else 1)
                    if p["in"] == "path":
                        url = url.replace("{" + p["name"] + "}", str(value))
                    elif p is target or p.get("required"):
                        query[p["name"]] = value
                response = httpx.request(method.upper(), base + url, params=query, headers=admin, json={})
                assert response.status_code < 500, (method, url, query, response.text[:200])
                tried += 1
    assert tried > 10


def _type(parameter: dict) -> str | None:
    schema = parameter.get("schema", {})
    return schema.get("type") or next((s.get("type") for s in schema.get("anyOf", []) if s.get("type") != "null"), None)

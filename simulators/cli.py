"""A simulated Da Nang, scenarios, camera streams, and record and replay."""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ioc_core import topics
from ioc_core.settings import get_settings
from simulators.city import KINDS
from simulators.faults import FaultRates
from simulators.registry import load_units, register
from simulators.reports import CityReports, Open311Poster, file_city_reports
from simulators.runner import CityRun, run_sharded

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _pairs(items: list[str], what: str) -> dict[str, float]:
    out = {}
    for item in items:
        kind, _, value = item.partition("=")
        if kind not in KINDS or not value:
            raise typer.BadParameter(f"{what} must be KIND=NUMBER with KIND one of {', '.join(KINDS)}: {item!r}")
        out[kind] = float(value)
    return out


@app.command()
def city(
    sensors: Annotated[int, typer.Option(help="Sensors placed across the units.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same city and same weather.")] = 1,
    speed: Annotated[float, typer.Option(help="Sim seconds per wall second; 0: as fast as the broker takes.")] = 1.0,
    hours: Annotated[float | None, typer.Option(help="Sim hours to run (default: until stopped).")] = None,
    start: Annotated[
        str | None, typer.Option(help="Sim start, RFC 3339 (default: now at 1x, else --hours ago)")
    ] = None,
    units: Annotated[list[str] | None, typer.Option("--unit", help="Only these units (repeat).")] = None,
    interval: Annotated[list[str] | None, typer.Option(help="KIND=SECONDS reporting interval (repeat).")] = None,
    share: Annotated[list[str] | None, typer.Option(help="KIND=WEIGHT share of the sensors (repeat).")] = None,
    jitter: Annotated[
        float, typer.Option(help="Reports come up to this fraction of their interval early or late.")
    ] = 0.1,
    faults: Annotated[
        str, typer.Option(help="Fault rates, e.g. dropout=0.01,duplicate=0.005,late=0.01,malformed=0.001,gateway=0.2")
    ] = "",
    do_register: Annotated[bool, typer.Option("--register/--no-register", help="Register the sensors first.")] = True,
    processes: Annotated[int, typer.Option(help="Publishing processes, each with a share of the sensors.")] = 1,
    reports: Annotated[
        bool, typer.Option(help="At real time, file its people's reports through Open311 (IOC_SIM_OPEN311_KEY).")
    ] = True,
) -> None:
    """Run a city of sensors: daily rhythms, weather, tide, and faulty devices at set rates."""
    settings = get_settings()
    if start:
        begin = datetime.fromisoformat(start).timestamp()
    elif speed == 1:
        begin = time.time()
    elif hours is None:
        raise typer.BadParameter("a speed other than 1 needs --hours (or --start): the run then ends at the present")
    else:
        begin = time.time() - hours * 3600  # so that no timestamp lies in the future
    try:
        city_units = load_units(settings.database_url, units)
    except ValueError as exc:  # no units (no shared data was seeded), or an unknown one asked for
        typer.echo(f"no city to simulate: {exc}", err=True)
        raise typer.Exit(2) from None
    plan = CityRun(
        units=city_units,
        sensors=sensors,
        seed=seed,
        start=begin,
        hours=hours,
        jitter=jitter,
        intervals=_pairs(interval or [], "--interval"),
        shares=_pairs(share or [], "--share"),
        faults=FaultRates.parse(faults),
        speed=None if speed <= 0 else speed,
        mqtt_url=settings.mqtt_url,
    )
    if do_register:
        typer.echo(f"registered {register(settings.database_url, plan.city((0, 1)).devices())} sensors")
    stop = _stop_on_signals()
    poster = None
    if reports and speed == 1 and settings.sim_open311_key:
        poster = Open311Poster(settings.sim_api_url, settings.sim_open311_key)
        threading.Thread(
            target=file_city_reports, args=(CityReports(city_units, seed), poster, stop), daemon=True
        ).start()
    stats, counts = run_sharded(plan, processes, stop)
    if poster:
        typer.echo(f"{poster.filed:,} citizens' reports filed, {poster.refused:,} refused")
    typer.echo(
        f"{stats.readings:,} readings ({stats.values:,} values) in {stats.messages:,} messages,"
        f" {stats.seconds:.1f} s ({stats.rate:,.0f} msg/s);"
        f" faults: {counts or 'none'}"
    )


@app.command()
def cameras(
    port: Annotated[int, typer.Option(help="Port of the MJPEG server.")] = 8554,
    do_register: Annotated[bool, typer.Option("--register/--no-register", help="Register the cameras.")] = True,
) -> None:
    """Serve the shared footage as live MJPEG cameras (looped, at their own pace) and register them."""
    from simulators.cameras import serve_demo_cameras

    serve_demo_cameras(get_settings(), port, do_register, _stop_on_signals())


@app.command()
def scenario(
    file: Annotated[Path, typer.Argument(help="A scenario file (YAML), e.g. simulators/scenarios/flood.yaml.")],
    speed: Annotated[float, typer.Option(help="Sim seconds per wall second; 0: as fast as the broker takes.")] = 0,
    exercise: Annotated[bool, typer.Option(help="Run it as a drill: what it causes is marked as an exercise.")] = False,
) -> None:
    """Run a scripted incident and print the alerts it should cause.

    At speed, run it against an ingest with IOC_ALERT_CLOCK=data, so that no-data rules and
    escalation keep the scenario's time rather than the wall clock's.
    """
    from simulators.scenarios import Scenario, run_scenario

    plan = Scenario.load(file)
    settings = get_settings()
    stats = run_scenario(plan, settings, speed=None if speed <= 0 else speed, show_progress=True, exercise=exercise)
    typer.echo(f"{stats.messages:,} messages in {stats.seconds:.1f} s; expected alerts:")
    for expected in plan.expect:
        typer.echo(f"  {expected.rule} on {expected.source}: opens, {'closes' if expected.closes else 'stays open'}")


@app.command()
def record(
    out: Annotated[Path, typer.Argument(help="File to write (JSON lines).")],
    seconds: Annotated[float, typer.Option(help="How long to record.")] = 60,
    topic: Annotated[str, typer.Option(help="Topic filter.")] = topics.ALL_READINGS,
) -> None:
    """Record MQTT traffic, with its arrival times, to a file."""
    from simulators.recording import record_mqtt

    n = record_mqtt(get_settings().mqtt_url, topic, out, seconds, _stop_on_signals())
    typer.echo(f"recorded {n:,} messages to {out}")


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="File to write (JSON lines).")],
    since: Annotated[str, typer.Option(help="Start of the window, RFC 3339.")],
    until: Annotated[str, typer.Option(help="End of the window, RFC 3339.")],
    sensor: Annotated[str, typer.Option(help="Sensor ids LIKE this pattern.")] = "%",
) -> None:
    """Export a window of stored readings as messages, one per sensor and time."""
    from simulators.recording import export_readings

    window = (datetime.fromisoformat(since), datetime.fromisoformat(until))
    if any(t.tzinfo is None for t in window):
        raise typer.BadParameter("--since and --until need a UTC offset, e.g. 2026-11-24T08:00:00+07:00")
    n = export_readings(get_settings().database_url, out, *window, sensor)
    typer.echo(f"exported {n:,} messages to {out}")


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A recording or an export (JSON lines).")],
    speed: Annotated[float, typer.Option(help="1 is real time, up to 1000; 0: as fast as the broker takes.")] = 1,
    shift_to_now: Annotated[bool, typer.Option(help="Move timestamps so the recording ends now.")] = False,
) -> None:
    """Replay a recording onto the broker, keeping its inter-arrival times (scaled by the speed)."""
    from simulators.recording import replay_file

    if speed > 1000 or speed < 0:
        raise typer.BadParameter("--speed is 0 (as fast as possible) or between 1x and 1000x")
    stats = replay_file(get_settings().mqtt_url, file, speed, shift_to_now, _stop_on_signals())
    typer.echo(f"replayed {stats.messages:,} messages in {stats.seconds:.1f} s ({stats.rate:,.0f} msg/s)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

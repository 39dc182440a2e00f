"""One typed settings object for every service, read from ``IOC_*`` variables and ``.env``."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Embedded defaults run everything on loopback: the project's cluster and broker."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "postgresql://ioc:ioc@127.0.0.1:5433/ioc",
        description="TimescaleDB connection URL; several hosts with target_session_attrs=read-write find the"
        " primary after a failover (cluster mode).",
    )
    database_read_url: str | None = Field(
        None,
        description="Where the API reads history (readings, NGSI-LD temporal), e.g. a streaming replica with"
        " target_session_attrs=prefer-standby; none: IOC_DATABASE_URL.",
    )
    mqtt_url: str = Field("mqtt://127.0.0.1:1884", description="Broker URL: mqtt://[user:password@]host:port.")
    broker_dir: Path = Field(
        REPO_ROOT / "var" / "mosquitto",
        description="The project broker's state: the password and ACL files the CLI writes, and its pid file.",
    )
    api_host: str = Field("127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(8080, description="Port the API listens on.")
    api_send_buffer_bytes: int = Field(
        256 * 1024,
        ge=0,
        description="Socket send buffer per connection (0: the kernel's autotuning). A small buffer makes a"
        " frozen screen back up, and be dropped, within a second instead of absorbing megabytes of sends.",
    )
    latest_max_age_s: float = Field(
        1.0, ge=0, description="How long a /latest body is shared by callers of the same scope (0: never)."
    )
    ngsild_max_age_s: float = Field(
        1.0, gt=0, description="How old the NGSI-LD entities may be before a request has them rebuilt."
    )
    session_hours: float = Field(12, gt=0, description="Lifetime of a login's token (a shift).")
    live_feed_period_s: float = Field(
        0.5,
        gt=0,
        description="How often each API node reads the events committed since its last look, to deliver"
        " those the broker did not bring and to tell each screen its position.",
    )
    live_token_recheck_s: float = Field(
        30, gt=0, description="How often an open WebSocket's token is checked again (revoked, expired, disabled)."
    )
    login_max_failures: int = Field(5, ge=1, description="Failed logins in a row that lock an account.")
    login_lockout_minutes: float = Field(15, gt=0, description="How long a locked account stays locked.")
    login_attempts_per_minute: int = Field(
        10, ge=1, description="Login attempts one client address may make per minute (on each API node)."
    )
    cors_origins: list[str] = Field(
        [], description="Web origins allowed to call the API from a browser (JSON list); none by default."
    )
    screen_tile_url: str | None = Field(
        None, description="A tile server for the screen's base map ({z}/{x}/{y}); none: units and boundary only."
    )
    snapshot_dir: Path = Field(REPO_ROOT / "var" / "snapshots", description="Where camera snapshots are saved.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = Field("json", description="Structured log lines.")
    shared_dir: Path = Field(
        REPO_ROOT.parent / "shared",
        description="Reference data (Da Nang's units, footage, models) used to seed and demo.",
    )

    office_hours: list[tuple[str, str]] = Field(
        [("07:30", "11:30"), ("13:00", "17:00")],
        description="Office hours of working days, in which citizens' reports' working time runs (JSON).",
    )
    photo_dir: Path = Field(REPO_ROOT / "var" / "photos", description="Where the photos of citizens' reports are kept.")
    photo_max_bytes: int = Field(8_000_000, gt=0, description="The largest photo a report may bring.")
    photo_quota_mb: float = Field(2048, gt=0, description="Photo storage of each unit's tickets, in MB.")
    report_duplicate_m: float = Field(
        100, ge=0, description="A report this close to an open ticket of its category joins it (metres)."
    )
    report_duplicate_hours: float = Field(
        72, ge=0, description="... if that ticket was received within this many hours."
    )
    report_close_after_days: float = Field(
        5, gt=0, description="Working days after which a resolved ticket that nobody disputed closes itself."
    )
    reports_per_minute: int = Field(10, ge=1, description="Reports one client address may file a minute (public page).")
    sprint_max_age_s: float = Field(60, ge=0, description="How long a civic sprint body is shared by its callers.")

    rules_refresh_s: float = Field(5.0, gt=0, description="How often ingest reloads rules and open alerts.")
    alert_check_s: float = Field(
        5.0, gt=0, description="How often escalations and no-data rules are checked (on a clock, not on readings)."
    )
    alert_clock: Literal["wall", "data"] = Field(
        "wall",
        description="What escalation and no-data rules time against: the wall clock, or (for replays and "
        "simulations at speed only) the newest reading's time.",
    )
    escalation_deadlines_s: dict[str, tuple[float, float]] = Field(
        {"critical": (300, 900), "major": (900, 2700), "minor": (3600, 10800), "info": (14400, 43200)},
        description="Per severity, seconds from opening to the first and the second escalation to city level"
        " when nobody acknowledges (JSON).",
    )
    escalation_unit_deadlines_s: dict[str, dict[str, tuple[float, float]]] = Field(
        {}, description='Per unit overrides of the deadlines (JSON: {"hai-chau": {"critical": [120, 600]}}).'
    )
    incident_check_s: float = Field(1.0, gt=0, description="How often what no incident holds yet is grouped.")
    incident_window_minutes: float = Field(
        60, gt=0, description="A member joins an open incident of its unit and type whose last member came within this."
    )
    incident_distance_m: float = Field(
        3000, gt=0, description="... and lies within this of it (where both have a place)."
    )
    smtp_url: str | None = Field(
        None, description="The SMTP server email notifications go through: smtp://[user:password@]host:port."
    )
    notify_from: str = Field("ioc@danang.gov.vn", description="The sender of email notifications.")
    notify_screen_url: str = Field("http://127.0.0.1:8080", description="The screen's address, in notifications.")
    notify_check_s: float = Field(1.0, gt=0, description="How often notifications are planned and delivered.")
    notify_per_person_per_hour: int = Field(
        30, ge=1, description="Messages one recipient gets an hour at most; what waits goes in the next one."
    )
    notify_attempts: int = Field(8, ge=1, description="Tries of a notification before it is given up as failed.")
    notify_metrics_port: int = Field(9301, description="Prometheus /metrics and /ready of the notifier.")
    ngsild_notify_attempts: int = Field(
        3, ge=1, description="Tries of an NGSI-LD notification (0.5 s, 1 s, ... apart) before it counts as failed."
    )
    ngsild_notify_timeout_s: float = Field(5.0, gt=0, description="How long a subscriber's endpoint has to answer.")
    cap_sender: str = Field("ioc@danang.gov.vn", description="The sender of the CAP 1.2 feed's alerts.")

    ingest_client_id_prefix: str = Field(
        "ioc-ingest", description="Worker N connects as PREFIX-N: a fixed id keeps its persistent session."
    )
    ingest_workers: int = Field(
        1,
        ge=1,
        description="How many ingest workers share the stream. One subscribes plainly, which a broker restart"
        " keeps; more share an MQTT 5 shared subscription ($share/ingest), which Mosquitto 2.0 forgets on a"
        " restart until each worker is back (messages in between have no subscriber).",
    )
    ingest_source: Literal["mqtt", "amqp"] = Field(
        "mqtt",
        description="What ingest reads: mqtt, its own session with the broker (the embedded default); amqp,"
        " the quorum queues of a RabbitMQ cluster (cluster mode, docs/cluster.md).",
    )
    amqp_hosts: Annotated[list[str], NoDecode] = Field(
        ["127.0.0.1:5672"],
        description="Cluster mode: the RabbitMQ nodes' AMQP addresses (host:port, comma-separated), tried in"
        " turn; the account is the one of IOC_MQTT_URL.",
    )
    amqp_queues: int = Field(
        4,
        ge=1,
        description="Cluster mode: quorum queues the readings are spread over by topic (each has one leader"
        " node; more queues spread the load over more nodes).",
    )
    ingest_batch_size: int = Field(10000, gt=0, description="Rows that trigger a flush.")
    ingest_batch_max_age_ms: int = Field(100, gt=0, description="Oldest row age that triggers a flush.")
    ingest_max_message_bytes: int = Field(
        256 * 1024, gt=0, description="Larger messages become dead letters (the broker refuses 4 MiB)."
    )
    ingest_unknown_sensors: Literal["accept", "reject"] = Field(
        "accept", description="accept: store and register as unregistered; reject: dead letter."
    )
    ingest_max_unregistered: int = Field(
        10_000,
        ge=0,
        description="Sensors ingest registers on its own (unregistered) at most; past it, readings of new unknown"
        " sensors are dead letters (registration_limit) until an engineer registers or deletes some.",
    )
    ingest_max_sensors_per_gateway: int = Field(
        1_000, ge=0, description="Sensors one gateway may bring in on its own at most; past it: registration_limit."
    )
    ingest_inbox_messages: int = Field(
        50_000,
        gt=0,
        description="Messages a worker holds received and not yet stored; when full it stops reading from the"
        " broker, so an overload leaves the backlog at the broker, not in the worker's memory.",
    )
    ingest_publish_queue: int = Field(
        10_000,
        gt=0,
        description="Stored events a worker holds to publish at most; past it they reach the screens through"
        " each API node's look at the database instead of the broker.",
    )
    ingest_max_future_s: float = Field(300, description="Readings further ahead than this are refused.")
    retention_days: int = Field(90, gt=0, description="Raw readings older than this are dropped and refused.")
    ingest_registry_refresh_s: float = Field(
        10,
        gt=0,
        description="How soon changes to devices ingest has seen (ranges, units) reach it; a device it has not"
        " seen is looked up at its first message.",
    )
    rollup_interval_s: float = Field(15, gt=0, description="How often the rollups catch up (Apache edition).")
    ingest_metrics_port: int = Field(9101, description="Prometheus /metrics port of ingest.")
    live_digest_interval_s: float = Field(1.0, gt=0, description="Period of the per-unit digest of changed values.")

    sim_api_url: str = Field("http://127.0.0.1:8080", description="The API the simulator files citizens' reports to.")
    sim_open311_key: str | None = Field(
        None, description="The simulator's Open311 key (channel simulated): without it, no reports are filed."
    )

    vision_engine: Literal["ultralytics", "onnx"] = Field(
        "ultralytics", description="Detector: Ultralytics (PyTorch, or its exports), or ONNX Runtime alone."
    )
    vision_model: Path | None = Field(
        None, description="Detector weights: .pt, an Ultralytics ONNX/OpenVINO export, or YOLO-FastestV2's .onnx."
    )
    vision_confidence: float = Field(0.25, gt=0, lt=1, description="Detections below this score are ignored.")
    vision_iou: float = Field(0.45, gt=0, lt=1, description="Overlap above which NMS keeps only the best box.")
    vision_imgsz: int = Field(640, ge=32, description="Detector input size where the model does not fix it.")
    vision_threads: int = Field(
        1, ge=1, description="CPU threads of one inference; one leaves the other cores to the stream decoders."
    )
    vision_track_confidence: float = Field(0.3, gt=0, lt=1, description="Score a detection needs to start a track.")
    vision_motion_gate: bool = Field(True, description="Skip detection on frames where nothing moved.")
    vision_force_detect_s: float = Field(2.0, gt=0, description="Longest time without a detection, motion or not.")
    vision_counts_interval_s: float = Field(60, gt=0, description="Period of a camera's counts message.")
    vision_worker_id: str = Field("vision-1", description="This worker's name: MQTT client ids start with it.")
    vision_shard: tuple[int, int] = Field(
        (0, 1), description="[index, count]: this worker takes the cameras whose id hashes to its index."
    )
    vision_refresh_s: float = Field(30, gt=0, description="How often the worker rereads its cameras from the registry.")
    vision_snapshots_kept: int = Field(
        200, gt=0, description="Event snapshots kept per camera; older ones are deleted."
    )
    vision_metrics_port: int = Field(9201, description="Prometheus /metrics port of the vision worker.")

    @field_validator("amqp_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""Configuration from the environment (design §4). The variable names are a contract: tools and tests outside
this repository rely on them.

This module is the only reader of the environment, and each default is defined once: as a field default of
`Config`, `LogSettings` or `TracingSettings` (or one of the constants below); `from_env` and the command
line's `--help` derive theirs from them. The rest of the service takes the values these objects carry.
(The OpenTelemetry SDK still reads its own OTEL_* variables, e.g. the exporter's endpoint and headers.)
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from videogen_server.domain.video import DEFAULT_KEY_NAME

DEFAULT_BASE_URL = "https://api.dev.runwayml.com"
# /metrics when the service runs from the environment; a Config made in code (tests) serves none.
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
# StreamContent chunk sizes the service accepts (bytes).
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 1024 * 1024
# How long an archived output is kept when VIDEOGEN_ARCHIVE_RETENTION does not say (30 days, in seconds).
DEFAULT_ARCHIVE_RETENTION = 30 * 86400.0


class ConfigError(ValueError):
    """A configuration value is malformed; the message names the variable, never its secret value."""


def listen_error(variable: str, address: str, error: OSError | None = None) -> ConfigError:
    """The start-up error for an address the server cannot listen on (`error`: the bind's, when known): one
    line naming the variable and the address, like every other configuration error (main.py: exit 2)."""
    if error is None or error.errno is None:
        why = "it is in use, or not an address of this host"
    elif error.errno == errno.EADDRINUSE:
        why = "the address is in use (another server on that port?)"
    elif error.errno > 0:
        why = os.strerror(error.errno)
    else:  # a name that does not resolve (socket.gaierror)
        why = error.strerror or str(error)
    return ConfigError(f"{variable}={address}: cannot listen there: {why}")


@dataclass(frozen=True)
class Config:
    # Runway key (RUNWAYML_API_SECRET, the key named DEFAULT_KEY_NAME); None, with no `runway_keys` either,
    # means: start the built-in simulator and use it.
    runway_api_secret: str | None = field(default=None, repr=False)
    # Several named Runway keys (issue 12): VIDEOGEN_RUNWAY_KEYS or VIDEOGEN_RUNWAY_KEYS_FILE, name -> secret.
    # Beside RUNWAYML_API_SECRET, that one is the key named "default" (see `runway_key_secrets`).
    runway_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    runway_base_url: str = DEFAULT_BASE_URL
    listen: str = "127.0.0.1:50051"
    # Prometheus /metrics address ("host:port", port 0 picks one); "" serves none. The environment's default
    # is DEFAULT_METRICS_LISTEN (VIDEOGEN_METRICS_LISTEN=off turns it off); in-process (tests) it is off.
    metrics_listen: str = ""
    data_dir: str = "./.videogen"
    # VIDEOGEN_STORE: "sqlite" (the file in data_dir), "sqlite:///absolute/path.db", or a Redis URL
    # (redis:// or rediss://, maybe with a password: never logged, see `store_description`).
    store: str = field(default="sqlite", repr=False)
    poll_interval: float = 5.0
    # Seconds a poller lease lasts without renewal (its holder renews every third of it): how long the
    # videos of a replica that died (kill -9) go unpolled before another replica takes them over.
    lease_ttl: float = 10.0
    # name -> key; empty means no caller authentication (local development).
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Seconds that streams in flight get to finish on SIGTERM before they end with an error status.
    shutdown_grace: float = 10.0
    # StreamContent chunk size (bytes): 256 KiB default, kept within 64 KiB..1 MiB.
    chunk_size: int = 256 * 1024
    # How old a poll may be for Get of a running video to reuse it instead of asking Runway.
    freshness: float = 1.0
    # Quiet WatchStatus streams re-send the current state this often (keeps L7 proxies from cutting them).
    watch_heartbeat: float = 30.0
    # TLS for the gRPC port: PEM file paths. Certificate and key together turn TLS on; a client CA on top
    # turns on mutual TLS (every client must present a certificate that CA signed).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # Concurrent StreamContent calls and WatchStatus streams; past them a call fails fast RESOURCE_EXHAUSTED.
    max_streams: int = 256
    max_watchers: int = 10_000
    # Each caller's share of those caps; None: half of the cap (at least 1) when callers are authenticated,
    # the whole cap without VIDEOGEN_API_KEYS (every call is then the one anonymous caller's).
    max_streams_per_caller: int | None = None
    max_watchers_per_caller: int | None = None
    # Seconds after which the server asks a client to open a new connection (HTTP/2 GOAWAY; grpc adds +-10%
    # jitter). Calls in flight, long WatchStatus streams included, run on to their end on the old connection.
    # It makes clients resolve the service's name again, so replicas added behind a DNS name (a Kubernetes
    # headless Service) start receiving calls. None: connections live for as long as the client keeps them.
    max_connection_age: float | None = 300.0
    # VIDEOGEN_MAX_ACTIVE_PER_CALLER: a caller's videos not yet finished (CREATING, QUEUED, IN_PROGRESS),
    # counted in the store, so across every replica sharing it; past it Generate is RESOURCE_EXHAUSTED
    # before any POST. None: no cap (and no count: Generate costs what it did).
    max_active_per_caller: int | None = None
    # VIDEOGEN_ARCHIVE: where finished videos are copied (see `archive_url`): "" is archive/ under data_dir,
    # "file:///absolute/dir", "s3://bucket[/prefix]" (AWS_* variables, read by the S3 client), or "off".
    archive: str = ""
    # VIDEOGEN_ARCHIVE_RETENTION: seconds an archived output is kept ("30d" default); None: kept forever.
    archive_retention: float | None = DEFAULT_ARCHIVE_RETENTION
    # Issue 11, the archiver: outputs copied into the archive at once (downloads and puts in flight, each
    # with its own connection to Runway's CDN on top of the stream limit's), the recovery scan's period (it
    # finds the copies a restart, a dead replica or a failure left undone) and the retention sweeper's.
    archive_concurrency: int = 4
    archive_scan_interval: float = 30.0
    archive_sweep_interval: float = 60.0
    # Issue 12, Upload: bytes that the uploads in flight may spool to disk together (under data_dir/uploads);
    # an upload that would pass it is RESOURCE_EXHAUSTED at once. 1 GB: five uploads of Runway's 200 MB.
    upload_spool_bytes: int = 1_000_000_000

    @property
    def use_simulator(self) -> bool:
        return not self.runway_api_secret and not self.runway_keys

    @property
    def runway_key_secrets(self) -> dict[str, str]:
        """Every configured Runway key, name -> secret, in configuration order: RUNWAYML_API_SECRET first
        (named DEFAULT_KEY_NAME), then the named keys. Empty: the simulator (it makes its own key)."""
        keys = {DEFAULT_KEY_NAME: self.runway_api_secret} if self.runway_api_secret else {}
        keys.update(self.runway_keys)
        return keys

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        default = cls()  # every default below is a field default
        secret = env.get("RUNWAYML_API_SECRET") or None
        return cls(
            runway_api_secret=secret,
            runway_keys=_runway_keys(env),
            runway_base_url=env.get("RUNWAYML_BASE_URL") or default.runway_base_url,
            listen=env.get("VIDEOGEN_LISTEN") or default.listen,
            metrics_listen=_metrics_listen(env),
            data_dir=env.get("VIDEOGEN_DATA_DIR") or default.data_dir,
            store=(env.get("VIDEOGEN_STORE") or default.store).strip(),
            poll_interval=_positive_float(env, "VIDEOGEN_POLL_INTERVAL", default.poll_interval),
            lease_ttl=_positive_float(env, "VIDEOGEN_LEASE_TTL", default.lease_ttl),
            api_keys=parse_api_keys(env.get("VIDEOGEN_API_KEYS", "")),
            shutdown_grace=_positive_float(env, "VIDEOGEN_SHUTDOWN_GRACE", default.shutdown_grace),
            chunk_size=_chunk_size(env, default.chunk_size),
            tls_cert=env.get("VIDEOGEN_TLS_CERT") or None,
            tls_key=env.get("VIDEOGEN_TLS_KEY") or None,
            tls_client_ca=env.get("VIDEOGEN_TLS_CLIENT_CA") or None,
            max_streams=_positive_int(env, "VIDEOGEN_MAX_STREAMS", default.max_streams),
            max_watchers=_positive_int(env, "VIDEOGEN_MAX_WATCHERS", default.max_watchers),
            max_streams_per_caller=_optional_positive_int(env, "VIDEOGEN_MAX_STREAMS_PER_CALLER"),
            max_watchers_per_caller=_optional_positive_int(env, "VIDEOGEN_MAX_WATCHERS_PER_CALLER"),
            max_connection_age=_seconds_or_off(
                env, "VIDEOGEN_MAX_CONNECTION_AGE", default.max_connection_age
            ),
            max_active_per_caller=_optional_positive_int(env, "VIDEOGEN_MAX_ACTIVE_PER_CALLER"),
            archive=_archive(env, default.archive),
            archive_retention=_retention(env, default.archive_retention),
            archive_concurrency=_positive_int(
                env, "VIDEOGEN_ARCHIVE_CONCURRENCY", default.archive_concurrency
            ),
            archive_scan_interval=_positive_float(
                env, "VIDEOGEN_ARCHIVE_SCAN_INTERVAL", default.archive_scan_interval
            ),
            archive_sweep_interval=_positive_float(
                env, "VIDEOGEN_ARCHIVE_SWEEP_INTERVAL", default.archive_sweep_interval
            ),
            upload_spool_bytes=_positive_int(env, "VIDEOGEN_UPLOAD_SPOOL_BYTES", default.upload_spool_bytes),
        )

    @property
    def streams_per_caller(self) -> int:
        return self._share(self.max_streams, self.max_streams_per_caller)

    @property
    def watchers_per_caller(self) -> int:
        return self._share(self.max_watchers, self.max_watchers_per_caller)

    def _share(self, limit: int, configured: int | None) -> int:
        if configured is not None:
            return configured
        # Without caller keys every call is the one anonymous caller's: a share would only halve the
        # server's capacity without protecting anybody, so by default that caller gets the whole cap.
        return default_share(limit) if self.api_keys else limit

    @property
    def store_description(self) -> str:
        """The store for the start-up log line, without credentials: ``sqlite <path>``, ``redis://host:port/0``."""
        if self.store == "sqlite":
            return f"sqlite {os.path.join(self.data_dir, 'videogen.sqlite3')}"
        if self.store.startswith("sqlite:///"):
            return f"sqlite {self.store.removeprefix('sqlite://')}"
        return redact_url(self.store)

    @property
    def archive_url(self) -> str | None:
        """The archive as a URL, ``file:///abs/dir`` or ``s3://bucket/prefix`` (never a credential: none
        can be in it), or None when it is off."""
        return resolve_archive_url(self.archive, self.data_dir)

    def __post_init__(self) -> None:
        check_api_keys(self.api_keys)
        check_runway_keys(self.runway_keys, self.runway_api_secret)
        check_store(self.store)
        check_archive(self.archive)
        if self.archive_retention is not None and not self.archive_retention > 0:
            raise ConfigError(f"VIDEOGEN_ARCHIVE_RETENTION must be positive, got {self.archive_retention}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("VIDEOGEN_TLS_CERT and VIDEOGEN_TLS_KEY must be set together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError(
                "VIDEOGEN_TLS_CLIENT_CA (mutual TLS) needs VIDEOGEN_TLS_CERT and VIDEOGEN_TLS_KEY"
            )
        if self.max_active_per_caller is not None and self.max_active_per_caller < 1:
            raise ConfigError(
                f"VIDEOGEN_MAX_ACTIVE_PER_CALLER must be at least 1, got {self.max_active_per_caller}"
            )
        for name, limit, share in (
            ("VIDEOGEN_MAX_STREAMS", self.max_streams, self.max_streams_per_caller),
            ("VIDEOGEN_MAX_WATCHERS", self.max_watchers, self.max_watchers_per_caller),
        ):
            # A share above the whole cap is refused rather than clamped: it is a contradiction (most
            # likely the cap was lowered and the share forgotten), and which of the two was meant to win
            # is not ours to guess. Equal is allowed: it turns the per-caller share off.
            if share is not None and not 1 <= share <= limit:
                raise ConfigError(f"{name}_PER_CALLER must be between 1 and {name} ({limit}), got {share}")


STORE_FORMS = "sqlite, sqlite:///absolute/path.db, redis://[user:password@]host:port/db or rediss://..."


def redact_url(url: str) -> str:
    """`url` as a log line or an error may show it: no user, password, query nor fragment."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(a value that is not a URL)"
    return f"{scheme}://{_host_and_path(rest)}"


_QUERY_OR_FRAGMENT = re.compile(r"[?#]")


def _host_and_path(rest: str) -> str:
    """``[user:password@]host[:port][/path][?query][#fragment]`` -> ``host[:port][/path]``.

    The user and password end at the last '@' before the first '/' (so a raw '?', '#' or '@' in a password
    goes with them). A query or fragment may start right after the host (redis-py reads ``?password=``
    too), and then all that follows is theirs. Should a '?' or '#' come before that '@', it is unclear
    which of the two the '@' is part of: nothing of the authority is shown then."""
    authority, _, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and _QUERY_OR_FRAGMENT.search(userinfo):
        return "(redacted)"
    host, *query = _QUERY_OR_FRAGMENT.split(host, maxsplit=1)
    path = "" if query else _QUERY_OR_FRAGMENT.split(path, maxsplit=1)[0]
    return host + (f"/{path}" if path else "")


def check_store(value: str) -> None:
    """VIDEOGEN_STORE is one of the forms in STORE_FORMS; the error never quotes a password."""
    if value == "sqlite":
        return
    if value.startswith("sqlite:"):
        if not value.startswith("sqlite:///") or value == "sqlite:///" or value.endswith("/"):
            raise ConfigError(
                f"VIDEOGEN_STORE={redact_url(value)}: a SQLite store is sqlite (in VIDEOGEN_DATA_DIR) or "
                "sqlite:///absolute/path.db (three slashes, then the absolute path of the file)"
            )
        return
    scheme = value.partition("://")[0].lower() if "://" in value else ""
    if scheme not in ("redis", "rediss"):
        shown = f"a value of scheme {scheme!r}" if scheme else repr(redact_url(value))
        if not scheme and "@" not in value and ":" not in value:
            shown = repr(value)  # nothing like a credential in it
        raise ConfigError(f"VIDEOGEN_STORE must be {STORE_FORMS}, got {shown}")
    shown = redact_url(value)
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(f"VIDEOGEN_STORE={shown}: not a valid URL (host:port?)") from None
    if not host:
        raise ConfigError(f"VIDEOGEN_STORE={shown}: the URL names no host ({STORE_FORMS})")
    db = parts.path.removeprefix("/")
    if db and not db.isdigit():
        raise ConfigError(f"VIDEOGEN_STORE={shown}: the database must be a number (/0), got {db!r}")
    del port  # checked by urlsplit: a port that is no number in 0..65535 raised above


ARCHIVE_FORMS = "file:///absolute/dir, s3://bucket[/prefix] or off"
# S3's bucket naming rules (the common subset every S3-compatible store accepts).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RETENTION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_RETENTION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def check_archive(value: str) -> None:
    """VIDEOGEN_ARCHIVE is "" (the default directory), "off", or one of ARCHIVE_FORMS; one line otherwise,
    which never quotes a credential (an S3 URL has no place for one: they are AWS_* variables)."""
    if value in ("", "off"):
        return
    scheme = value.partition("://")[0].lower() if "://" in value else ""
    if scheme == "file":
        if not value.startswith("file:///") or value.rstrip("/") == "file:" or "?" in value or "#" in value:
            raise ConfigError(
                f"VIDEOGEN_ARCHIVE={redact_url(value)}: a directory archive is file:///absolute/dir "
                "(three slashes, then the absolute path of the directory)"
            )
        if ".." in value.removeprefix("file://").split("/"):
            raise ConfigError(f"VIDEOGEN_ARCHIVE={redact_url(value)}: the path must not contain '..'")
        return
    if scheme == "s3":
        shown = redact_url(value)
        rest = value[len("s3://") :]
        netloc, _, prefix = rest.partition("/")
        if "@" in netloc:
            raise ConfigError(
                f"VIDEOGEN_ARCHIVE={shown}: put no credentials in the URL; an S3 archive takes them from "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if not _BUCKET.fullmatch(netloc) or ".." in netloc:
            raise ConfigError(
                f"VIDEOGEN_ARCHIVE={shown}: {netloc!r} is not an S3 bucket name (3-63 characters: "
                "lowercase letters, digits, dots, hyphens); the endpoint goes in AWS_ENDPOINT_URL"
            )
        if "?" in prefix or "#" in prefix or ".." in prefix.split("/") or "//" in prefix.rstrip("/"):
            raise ConfigError(f"VIDEOGEN_ARCHIVE={shown}: the prefix must be a plain path (a/b/c)")
        return
    shown = f"a value of scheme {scheme!r}" if scheme else repr(redact_url(value) if "@" in value else value)
    raise ConfigError(f"VIDEOGEN_ARCHIVE must be {ARCHIVE_FORMS}, got {shown}")


def resolve_archive_url(value: str, data_dir: str) -> str | None:
    """The archive a (checked) VIDEOGEN_ARCHIVE value names: None for off, the absolute ``file://`` URL of
    archive/ under `data_dir` for "", the value itself otherwise (without a trailing slash)."""
    if value == "off":
        return None
    if value == "":
        return "file://" + os.path.join(os.path.abspath(data_dir), "archive")
    return value.rstrip("/")


def parse_retention(raw: str) -> float | None:
    """VIDEOGEN_ARCHIVE_RETENTION: ``<n>s|m|h|d`` (seconds, minutes, hours, days) or ``forever`` (None)."""
    value = raw.strip().lower()
    if value == "forever":
        return None
    match = _RETENTION.fullmatch(value)
    seconds = float(match.group(1)) * _RETENTION_UNITS[match.group(2)] if match else 0.0
    if not seconds > 0:
        raise ConfigError(
            f"VIDEOGEN_ARCHIVE_RETENTION must be a positive duration like 30d, 12h, 90m, 3600s, or forever; "
            f"got {raw!r}"
        )
    return seconds


def _archive(env: Mapping[str, str], default: str) -> str:
    raw = (env.get("VIDEOGEN_ARCHIVE") or default).strip()
    return "off" if raw.lower() == "off" else raw


def _retention(env: Mapping[str, str], default: float | None) -> float | None:
    raw = env.get("VIDEOGEN_ARCHIVE_RETENTION", "").strip()
    return parse_retention(raw) if raw else default


def default_share(limit: int) -> int:
    """A caller's share of `limit` when none is configured: half of it, at least 1."""
    return max(1, limit // 2)


def _metrics_listen(env: Mapping[str, str]) -> str:
    raw = (env.get("VIDEOGEN_METRICS_LISTEN") or DEFAULT_METRICS_LISTEN).strip()
    if raw.lower() in ("off", "none", "false"):
        return ""
    _, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"VIDEOGEN_METRICS_LISTEN must look like host:port (or 'off'), got {raw!r}")
    return raw


def trace_exporters(env: Mapping[str, str]) -> list[str]:
    """The OpenTelemetry span exporters the standard OTEL_* variables ask for; [] means tracing is off.

    Unlike the OpenTelemetry SDK (whose default is "otlp"), tracing is off unless OTEL_TRACES_EXPORTER names
    an exporter or an OTLP endpoint says where to send spans. OTEL_SDK_DISABLED=true turns it off."""
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return []
    raw = (env.get("OTEL_TRACES_EXPORTER") or "").strip()
    if not raw:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    return list(dict.fromkeys(n for n in names if n != "none"))


# The span exporters videogen can build, and the one OTLP protocol it speaks.
TRACE_EXPORTERS = ("otlp", "console")
OTLP_PROTOCOL = "http/protobuf"
DEFAULT_OTLP_ENDPOINT = "http://localhost:4318"  # the SDK's, for OTLP over HTTP


@dataclass(frozen=True)
class TracingSettings:
    """What the OTEL_* variables ask of tracing; no exporters: off (OpenTelemetry is then never imported).

    OTLP goes over HTTP/protobuf; the SDK reads the exporter's own settings (endpoint, headers, timeout,
    compression), the sampler and the batch processor's from the environment itself."""

    exporters: tuple[str, ...] = ()
    service_name: str = "videogen"
    # Where OTLP spans go, as the SDK resolves it, for the start-up log: no credentials (see `_loggable`).
    otlp_endpoint: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.exporters)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TracingSettings:
        env = os.environ if env is None else env
        names = trace_exporters(env)
        for name in names:
            if name not in TRACE_EXPORTERS:
                raise ConfigError(
                    f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (videogen knows otlp, console, none)"
                )
            if name == "otlp":
                protocol = (
                    env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                    or ""
                ).strip()
                if protocol not in ("", OTLP_PROTOCOL):
                    raise ConfigError(
                        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: videogen exports OTLP "
                        f"over {OTLP_PROTOCOL} (a collector's port 4318)"
                    )
        return cls(
            exporters=tuple(names),
            service_name=env.get("OTEL_SERVICE_NAME") or cls.service_name,
            otlp_endpoint=_loggable(otlp_traces_endpoint(env)) if "otlp" in names else "",
        )


def otlp_traces_endpoint(env: Mapping[str, str]) -> str:
    """The URL the OTLP/HTTP span exporter posts to, resolved as the SDK does: the traces endpoint as given,
    else the general endpoint (or the SDK's default) with /v1/traces appended."""
    if traces := env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return traces
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_OTLP_ENDPOINT
    return f"{base.removesuffix('/')}/v1/traces"


def _loggable(url: str) -> str:
    """`url` without what may be a credential, as `redact_url` shows it; an endpoint without a scheme
    (``host:port``) as its host, port and path. (The headers, OTEL_EXPORTER_OTLP_HEADERS, are never read
    here, let alone logged.)"""
    url = url.strip()
    return redact_url(url) if "://" in url else _host_and_path(url)


LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LogSettings:
    """VIDEOGEN_LOG_FORMAT and VIDEOGEN_LOG_LEVEL. A bad value is not fatal: its default is used instead and
    `problem` says why, to be logged once logging is set up (a configuration error must reach the log)."""

    format: str = "text"
    level: str = "INFO"
    problem: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LogSettings:
        env = os.environ if env is None else env
        default = cls()
        problem = None
        fmt = (env.get("VIDEOGEN_LOG_FORMAT") or default.format).strip().lower()
        if fmt not in LOG_FORMATS:
            problem = f"VIDEOGEN_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}"
            fmt = default.format
        level = (env.get("VIDEOGEN_LOG_LEVEL") or default.level).strip().upper()
        if level not in logging.getLevelNamesMapping():
            problem = problem or f"VIDEOGEN_LOG_LEVEL must be a level name like INFO or DEBUG, got {level!r}"
            level = default.level
        return cls(format=fmt, level=level, problem=problem)


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _seconds_or_off(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    """A positive number of seconds, or ``off`` (None)."""
    raw = (env.get(name) or "").strip()
    if raw.lower() == "off":
        return None
    if not raw:
        return default
    try:
        return _positive_float({name: raw}, name, 1.0)
    except ConfigError:
        raise ConfigError(f"{name} must be a positive number of seconds or 'off', got {raw!r}") from None


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {raw!r}")
    return value


def _optional_positive_int(env: Mapping[str, str], name: str) -> int | None:
    """None when unset: the value is then derived from another (see Config)."""
    if not env.get(name):
        return None
    return _positive_int(env, name, 1)


def _chunk_size(env: Mapping[str, str], default: int) -> int:
    raw = env.get("VIDEOGEN_CHUNK_SIZE")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"VIDEOGEN_CHUNK_SIZE must be an integer, got {raw!r}") from None
    if not MIN_CHUNK_SIZE <= value <= MAX_CHUNK_SIZE:
        raise ConfigError(f"VIDEOGEN_CHUNK_SIZE must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes")
    return value


# Caller keys shorter than this are refused: guessable, and too short to be scrubbed from logs reliably.
MIN_API_KEY_LENGTH = 16


def check_api_keys(keys: Mapping[str, str]) -> None:
    """Every caller has a key of its own, long enough. Checked for keys from the environment and from code
    alike. A shared key would identify its second caller as the first (the first match wins), so two
    callers would see and cancel each other's videos. Errors name callers, never a key."""
    owner: dict[str, str] = {}
    for name, key in keys.items():
        if len(key) < MIN_API_KEY_LENGTH:
            raise ConfigError(
                f"VIDEOGEN_API_KEYS: the key of {name!r} is too short; keys must be at least "
                f"{MIN_API_KEY_LENGTH} characters (e.g. openssl rand -hex 24)"
            )
        if key in owner:
            raise ConfigError(
                f"VIDEOGEN_API_KEYS: {owner[key]!r} and {name!r} have the same key; each caller needs its own"
            )
        owner[key] = name


def parse_api_keys(raw: str) -> dict[str, str]:
    """`name:key,name:key` -> {name: key}. Errors never echo a key."""
    keys: dict[str, str] = {}
    for index, item in enumerate(part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, key = item.partition(":")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise ConfigError(f"VIDEOGEN_API_KEYS entry {index + 1} must look like name:key")
        if name in keys:
            raise ConfigError(f"VIDEOGEN_API_KEYS names {name!r} twice")
        keys[name] = key
    return keys


# --- Runway keys (issue 12) ---------------------------------------------------------------------------

RUNWAY_KEYS = "VIDEOGEN_RUNWAY_KEYS"
RUNWAY_KEYS_FILE = "VIDEOGEN_RUNWAY_KEYS_FILE"
# A key's name: it is stored on every video (Video.runway_key) and is a metrics label, so it is short and
# plain; the secret is never shown anywhere.
_RUNWAY_KEY_NAME = re.compile(r"[a-z0-9_-]{1,63}")


def _runway_keys(env: Mapping[str, str]) -> dict[str, str]:
    """VIDEOGEN_RUNWAY_KEYS (``name:secret,name2:secret2``) or VIDEOGEN_RUNWAY_KEYS_FILE (a file of
    ``name:secret`` lines, blank lines and ``#`` comments ignored: a mounted Kubernetes Secret). Both at
    once is refused: which of the two lists was meant is not ours to guess, and a merge would hide a key
    left over in one of them."""
    inline = env.get(RUNWAY_KEYS, "").strip()
    path = env.get(RUNWAY_KEYS_FILE, "").strip()
    if inline and path:
        raise ConfigError(f"set {RUNWAY_KEYS} or {RUNWAY_KEYS_FILE}, not both")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(f"{RUNWAY_KEYS_FILE}={path}: cannot read it: {why}") from None
        return parse_runway_keys_file(text, RUNWAY_KEYS_FILE)
    return parse_runway_keys(inline, RUNWAY_KEYS)


def parse_runway_keys(raw: str, variable: str = RUNWAY_KEYS) -> dict[str, str]:
    """``name:secret,name2:secret2`` -> {name: secret}. Errors name the entry by position (and its name when
    it has a valid one), never a secret."""
    items = [(f"entry {i + 1}", part) for i, part in enumerate(raw.split(","))]
    return _runway_key_entries(items, variable)


def parse_runway_keys_file(text: str, variable: str = RUNWAY_KEYS_FILE) -> dict[str, str]:
    """One ``name:secret`` per line; blank lines and lines starting with ``#`` are skipped."""
    items = [
        (f"line {i + 1}", line)
        for i, line in enumerate(text.splitlines())
        if line.strip() and not line.strip().startswith("#")
    ]
    return _runway_key_entries(items, variable)


def _runway_key_entries(items: list[tuple[str, str]], variable: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for where, item in items:
        item = item.strip()
        if not item:
            continue
        name, sep, secret = item.partition(":")
        name, secret = name.strip(), secret.strip()
        if not sep or not name or not secret:
            raise ConfigError(f"{variable}: {where} must look like name:secret")
        if not _RUNWAY_KEY_NAME.fullmatch(name):
            raise ConfigError(
                f"{variable}: {where}: a key name is 1-63 characters of a-z, 0-9, '_' and '-' "
                "(it is shown on videos and in metrics; the secret never is)"
            )
        if any(c.isspace() for c in secret):
            raise ConfigError(f"{variable}: {where} ({name!r}): the secret must not contain whitespace")
        if name in keys:
            raise ConfigError(f"{variable} names {name!r} twice")
        keys[name] = secret
    return keys


def check_runway_keys(keys: Mapping[str, str], default_secret: str | None) -> None:
    """Names are valid and unique (a Mapping makes them unique), secrets distinct, and RUNWAYML_API_SECRET,
    when set beside the named keys, does not clash with a key also named DEFAULT_KEY_NAME. Errors name
    keys, never a secret.

    Why RUNWAYML_API_SECRET beside the named keys is the key named "default", and not refused: videos made
    before several keys existed are pinned to "default" (their runway_key is empty), and a deployment that
    adds a second key keeps its first where it is (the SDK's variable, often a Secret of its own): adding
    keys is then additive, and the old videos keep their key. Naming "default" in the list as well would be
    two secrets for one name: refused."""
    for name in keys:
        if not _RUNWAY_KEY_NAME.fullmatch(name):
            raise ConfigError(f"{RUNWAY_KEYS}: {name!r} is not a valid key name (a-z, 0-9, '_', '-')")
    if default_secret and DEFAULT_KEY_NAME in keys:
        raise ConfigError(
            f"RUNWAYML_API_SECRET is the Runway key named {DEFAULT_KEY_NAME!r}, and {RUNWAY_KEYS} names "
            f"{DEFAULT_KEY_NAME!r} too: remove one of them"
        )
    owner: dict[str, str] = {DEFAULT_KEY_NAME: default_secret} if default_secret else {}
    names = {secret: name for name, secret in owner.items()}
    for name, secret in keys.items():
        if not secret:
            raise ConfigError(f"{RUNWAY_KEYS}: the key {name!r} has an empty secret")
        if secret in names:
            raise ConfigError(
                f"Runway keys {names[secret]!r} and {name!r} have the same secret: one Runway organization "
                "under two names would be counted twice; name each key once"
            )
        names[secret] = name

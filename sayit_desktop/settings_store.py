"""The node's config.toml, read and written by the tray.

The node reads top-level keys (field names of `sayit_node.config.Settings`); the tray keeps
its own settings in a `[desktop]` table, which the node ignores. Writing keeps every key and
table the tray does not know about. Environment variables (and `.env` in the directory the
node starts in) beat the file, exactly as in the node; `env_overrides()` says which.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from sayit_node.client import local_url
from sayit_node.config import Settings, config_file_path, load_settings

# Node settings the dialog edits, in the order it shows them.
NODE_KEYS = (
    "port", "host", "model", "language", "max_concurrent_chunks",
    "cluster_secret", "host_redis", "redis_url", "api_keys",
)
SECRET_KEYS = frozenset({"cluster_secret", "api_keys"})
# Environment names of federation settings, used should the node's Settings not define them.
FALLBACK_ENV_NAMES = {
    "cluster_secret": "SAYIT_CLUSTER_SECRET",
    "host_redis": "SAYIT_HOST_REDIS",
    "redis_url": "REDIS_URL",
    "discovery": "SAYIT_DISCOVERY",
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LAN_HOST = "0.0.0.0"


class ConfigError(Exception):
    """config.toml (or the environment) holds something the node cannot use."""


@dataclass
class DesktopSettings:
    """The `[desktop]` table: settings only the tray uses."""

    start_node_on_launch: bool = True
    notify_jobs: bool = True
    notify_peers: bool = True
    stop_timeout: float = 10.0  # seconds a graceful stop may take before the node is killed

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> "DesktopSettings":
        out = cls()
        for f in fields(cls):
            value = table.get(f.name)
            if value is None:
                continue
            default = getattr(out, f.name)
            if isinstance(default, bool) and isinstance(value, bool):
                setattr(out, f.name, value)
            elif isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(out, f.name, float(value))
        return out

    def to_table(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ConfigFile:
    """config.toml at `path` (default: the node's `config_file_path()`)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else config_file_path()

    def read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            return tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from exc

    def node_values(self) -> dict[str, Any]:
        return {k: v for k, v in self.read().items() if not isinstance(v, dict)}

    def desktop(self) -> DesktopSettings:
        try:
            table = self.read().get("desktop", {})
        except ConfigError:
            table = {}
        return DesktopSettings.from_table(table if isinstance(table, dict) else {})

    def write(self, node_values: Mapping[str, Any] | None = None,
              desktop: DesktopSettings | Mapping[str, Any] | None = None) -> None:
        """Merge into the file: a key set to None is removed; everything else is kept."""
        try:
            doc = self.read()
        except ConfigError:
            raise
        for key, value in (node_values or {}).items():
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        if desktop is not None:
            table = desktop.to_table() if isinstance(desktop, DesktopSettings) else dict(desktop)
            current = doc.get("desktop") if isinstance(doc.get("desktop"), dict) else {}
            doc["desktop"] = {**current, **table}
        text = ("# SayIt settings: read by the node (top-level keys) and the tray app ([desktop]).\n"
                + dumps(doc))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o600)  # it can hold API keys and the cluster secret
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# --- a small TOML writer (strings, numbers, booleans, arrays, nested tables) ------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Path):
        return _string(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps(doc: Mapping[str, Any], _prefix: str = "") -> str:
    lines: list[str] = []
    tables = []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, table in tables:
        name = f"{_prefix}.{_key(key)}" if _prefix else _key(key)
        lines.append("")
        lines.append(f"[{name}]")
        body = dumps(table, name)
        if body:
            lines.append(body.rstrip("\n"))
    return "\n".join(lines).lstrip("\n") + "\n"


# --- environment ------------------------------------------------------------------------------

def env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    return FALLBACK_ENV_NAMES.get(field, field.upper())


def _dotenv(directory: Path) -> dict[str, str]:
    path = directory / ".env"
    if not path.is_file():
        return {}
    try:
        from dotenv import dotenv_values
    except ImportError:  # pragma: no cover - python-dotenv comes with pydantic-settings
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


@dataclass(frozen=True)
class Override:
    field: str
    variable: str
    value: str
    source: str  # "environment" or ".env"

    def describe(self) -> str:
        shown = "•••" if self.field in SECRET_KEYS else self.value
        where = "environment variable" if self.source == "environment" else ".env entry"
        return f"Overridden by the {where} {self.variable}={shown}; the value here applies once it is unset."


def env_overrides(environ: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> dict[str, Override]:
    """Settings whose value the node takes from the environment instead of config.toml."""
    environ = os.environ if environ is None else environ
    env_lower = {k.lower(): (k, v) for k, v in environ.items()}
    dotenv_lower = {k.lower(): (k, v) for k, v in _dotenv(cwd or Path.cwd()).items()}
    names = set(Settings.model_fields) | set(NODE_KEYS)
    out: dict[str, Override] = {}
    for field in names:
        var = env_name(field).lower()
        if field == "redis_url" and var not in env_lower and "redis_host" in env_lower:
            var = "redis_host"  # the node builds its Redis URL from REDIS_HOST too
        if var in env_lower:
            name, value = env_lower[var]
            out[field] = Override(field, name, value, "environment")
        elif var in dotenv_lower:
            name, value = dotenv_lower[var]
            out[field] = Override(field, name, value, ".env")
    return out


def effective_settings() -> Settings:
    """The settings the node will run with (flags aside): environment, .env, config.toml."""
    try:
        return load_settings()
    except Exception as exc:  # pydantic ValidationError, unreadable file, ...
        raise ConfigError(str(exc)) from exc


# --- validation -------------------------------------------------------------------------------

_LANG = re.compile(r"^[a-z]{2,3}$")
_KEY_BAD = re.compile(r"[\s,]")


def validate(values: Mapping[str, Any]) -> dict[str, str]:
    """Problems with the dialog's node values, by field; empty when all is well."""
    errors: dict[str, str] = {}
    port = values.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        errors["port"] = "Port must be a whole number from 1 to 65535."
    host = values.get("host")
    if host is not None and (not isinstance(host, str) or not host.strip() or " " in host):
        errors["host"] = "Host must be an address such as 127.0.0.1."
    model = values.get("model")
    if not isinstance(model, str) or not model.strip():
        errors["model"] = "Choose a model, e.g. tiny.en or base."
    elif any(ch.isspace() for ch in model.strip()) and not Path(model.strip()).exists():
        errors["model"] = "A model is a name such as base, or the folder of a model."
    language = values.get("language")
    if language is not None:
        if not isinstance(language, str) or not _LANG.match(language):
            errors["language"] = "Language is a Whisper code such as en, de or fr (or Automatic)."
        elif isinstance(model, str) and model.strip().endswith(".en") and language != "en":
            errors["language"] = f"The model {model.strip()} only understands English."
    chunks = values.get("max_concurrent_chunks")
    if not isinstance(chunks, int) or isinstance(chunks, bool) or not 1 <= chunks <= 256:
        errors["max_concurrent_chunks"] = "Concurrent chunks must be from 1 to 256."
    secret = values.get("cluster_secret")
    if secret is not None:
        if not isinstance(secret, str) or len(secret) < 8 or any(ch.isspace() for ch in secret):
            errors["cluster_secret"] = "The cluster secret needs at least 8 characters and no spaces."
        else:
            from sayit_node.passphrase import MIN_BITS, estimated_bits

            bits = estimated_bits(secret)
            if bits < MIN_BITS:
                errors["cluster_secret"] = (f"This secret is too easy to guess (about {bits:.0f} bits, "
                                            f"{MIN_BITS:.0f} needed): press Generate.")
    url = values.get("redis_url")
    if url is not None:
        if not isinstance(url, str) or not re.match(r"^(redis|rediss|unix)://\S+$", url):
            errors["redis_url"] = "A Redis URL looks like redis://host:6379/0."
        elif values.get("host_redis"):
            errors["redis_url"] = "Choose either hosting Redis here or a Redis URL."
    keys = values.get("api_keys") or []
    if not isinstance(keys, list):
        errors["api_keys"] = "API keys must be a list."
    else:
        for key in keys:
            if not isinstance(key, str) or not key or _KEY_BAD.search(key):
                errors["api_keys"] = "API keys cannot contain spaces or commas."
                break
            if len(key) < 8:
                errors["api_keys"] = f"The API key {key!r} is too short (8 characters at least)."
                break
        if len(set(keys)) != len(keys):
            errors.setdefault("api_keys", "An API key is listed twice.")
    return errors


def redis_mode(values: Mapping[str, Any]) -> str:
    """'host' (run Redis here), 'url' (use a given Redis) or 'auto' (find one on the LAN with
    mDNS discovery, or work alone)."""
    if values.get("host_redis"):
        return "host"
    if values.get("redis_url"):
        return "url"
    return "auto"


def node_url(settings: Any) -> str:
    """Where the tray reaches a node configured with `settings` (it always asks over loopback
    when the node listens on every interface)."""
    return local_url(getattr(settings, "host", "127.0.0.1"), settings.port)

"""Settings: one frozen value built from defaults, `fedistream.toml` and `FEDISTREAM_*` env vars.

Leaf module: imports nothing from the package. Precedence, lowest first: built-in defaults,
the TOML file, environment variables, explicit overrides (CLI flags).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "FEDISTREAM_"
CONFIG_FILENAME = "fedistream.toml"
DEFAULT_DATA_DIR = "fedistream-data"


class SettingsError(ValueError):
    """A setting has a value we cannot run with; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Settings:
    base_url: str = "http://127.0.0.1:8000"
    username: str = "owner"
    display_name: str = ""
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR))
    host: str = "127.0.0.1"
    port: int = 8000
    owner_password: str | None = None
    allow_private_networks: bool = False
    manually_approves_followers: bool = False
    max_upload_bytes: int = 8 * 1024 * 1024
    max_post_chars: int = 20_000
    trusted_proxy: str | None = None
    # Serve TLS directly (tests with a throwaway CA; production uses a reverse proxy instead).
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None

    @property
    def domain(self) -> str:
        """Host (and port, when not the scheme default) of the base URL: the handle's domain."""
        return urlsplit(self.base_url).netloc

    @property
    def handle(self) -> str:
        return f"@{self.username}@{self.domain}"

    @property
    def is_https(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "fedistream.sqlite3"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILENAME

    def url(self, path: str) -> str:
        """Absolute URL for a local path such as `/p/abc`."""
        return self.base_url + path

    def display_name_or_username(self) -> str:
        return self.display_name or self.username


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Turn a TOML or env value into the field's type, with a message naming the setting."""
    if value is None:
        return None
    try:
        if kind in (bool, "bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _BOOL_TRUE:
                return True
            if text in _BOOL_FALSE:
                return False
            raise ValueError(f"expected true/false, got {value!r}")
        if kind in (int, "int"):
            return int(value)
        if kind in (Path, "Path"):
            return Path(str(value)).expanduser()
        return str(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name!r}: {exc}") from exc


def _field_kinds() -> dict[str, str]:
    kinds: dict[str, str] = {}
    for f in fields(Settings):
        annotation = str(f.type)
        if "bool" in annotation:
            kinds[f.name] = "bool"
        elif "int" in annotation:
            kinds[f.name] = "int"
        elif "Path" in annotation:
            kinds[f.name] = "Path"
        else:
            kinds[f.name] = "str"
    return kinds


def _validate(settings: Settings) -> Settings:
    parts = urlsplit(settings.base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(
            f"base_url must look like https://example.com, got {settings.base_url!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError(
            "base_url must be the site root (fedistream serves the whole domain), "
            f"got {settings.base_url!r}"
        )
    username = settings.username
    if not username or not all(c.isascii() and (c.isalnum() or c == "_") for c in username):
        raise SettingsError(
            f"username may contain only ASCII letters, digits and '_', got {username!r}"
        )
    if not 0 < settings.port < 65536:
        raise SettingsError(f"port must be 1..65535, got {settings.port}")
    return replace(settings, base_url=settings.base_url.rstrip("/"))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from exc
    kinds = _field_kinds()
    unknown = sorted(set(data) - set(kinds))
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load_settings(
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings. The config file is `config_path`, else `$FEDISTREAM_CONFIG`, else
    `./fedistream.toml` when present, else `<data_dir>/fedistream.toml` when present."""
    env = os.environ if env is None else env
    kinds = _field_kinds()
    from_env = {
        name: env[ENV_PREFIX + name.upper()] for name in kinds if ENV_PREFIX + name.upper() in env
    }
    explicit = {k: v for k, v in overrides.items() if v is not None}

    if config_path is None and env.get(ENV_PREFIX + "CONFIG"):
        config_path = Path(env[ENV_PREFIX + "CONFIG"])
    if config_path is None and Path(CONFIG_FILENAME).is_file():
        config_path = Path(CONFIG_FILENAME)
    if config_path is None:
        data_dir = Path(explicit.get("data_dir") or from_env.get("data_dir") or DEFAULT_DATA_DIR)
        candidate = data_dir / CONFIG_FILENAME
        if candidate.is_file():
            config_path = candidate
    from_file = read_toml(config_path) if config_path is not None else {}

    merged: dict[str, Any] = {}
    for source in (from_file, from_env, explicit):
        for name, value in source.items():
            merged[name] = _coerce(name, kinds[name], value)
    if "base_url" not in merged:
        # No base URL configured: a local instance, reachable where it listens.
        host = merged.get("host", "127.0.0.1")
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if merged.get("tls_certfile") else "http"
        merged["base_url"] = f"{scheme}://{host}:{merged.get('port', 8000)}"
    return _validate(Settings(**merged))


def settings_to_toml(settings: Settings) -> dict[str, Any]:
    """The subset of settings `fedistream init` writes (never the password)."""
    return {
        "base_url": settings.base_url,
        "username": settings.username,
        "display_name": settings.display_name,
        "data_dir": str(settings.data_dir),
        "host": settings.host,
        "port": settings.port,
        "manually_approves_followers": settings.manually_approves_followers,
    }

"""The daemon's settings: defaults, then the TOML file, then `MRFLOW_*` variables, then flags.

Every setting is one field of `DaemonConfig`. Its name is the TOML key (in a
`[daemon]` table or at the top level of `paths.config_file()`), its upper-case
name with an `MRFLOW_` prefix is its environment variable, and its dashed name
is the `mrflow serve` flag. A value that does not parse is an error naming the
setting, where it came from and what is allowed; nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrflow_protocol.limits import Limits
from mrflow_protocol.version import DEFAULT_PORT

from mrflow_daemon import paths

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

LOG_LEVELS = ("debug", "info", "warning", "error")
DEVICE_PATTERN = re.compile(r"(cpu|mps|cuda(:\d+)?)?")  # what the engine's pick_device takes
DTYPE_NAMES = ("bfloat16", "bf16", "float16", "fp16", "float32", "fp32")  # its pick_dtype's
MODEL_NAME_LIMIT = 256  # mrflow_protocol's `Name`: the model is named in welcome and result
PREVIEW_FORMATS = ("jpeg", "webp", "png")


class ConfigError(ValueError):
    """A setting has a value that is not allowed; the message names it and its source."""


def _setting(default: Any, help: str, *, choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


def setting_default(f: dataclasses.Field[Any]) -> Any:
    """A setting's default value (a fresh one for lists)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


@dataclass
class DaemonConfig:
    # Network
    host: str = _setting("127.0.0.1", "address to listen on (loopback unless --allow-remote)")
    port: int = _setting(DEFAULT_PORT, "TCP port to listen on (0 picks a free one)")
    allow_remote: bool = _setting(False, "allow a non-loopback --host; the token is still required")
    allowed_origins: list[str] = field(
        default_factory=list,
        metadata={
            "help": "browser Origin values allowed to connect, e.g. http://localhost:3000 "
            "(handshakes with any other Origin header get HTTP 403)",
            "choices": (),
        },
    )
    token_file: str = _setting("", "the per-user token file (default: <config dir>/token)")
    # Models
    model: str = _setting(
        "builtin", "default model: a diffusers folder, an installed name or 'builtin'"
    )
    device: str = _setting("", "torch device for the engine (default: cuda if available, else cpu)")
    dtype: str = _setting("", "torch dtype: bfloat16, float16 or float32 (default: per device)")
    offload: bool = _setting(False, "offload model parts to the CPU between uses (low VRAM)")
    upscaler: str = _setting(
        "",
        "upscaler weights file or name (default: RealESRGAN_x2plus if installed, else "
        "RealESRGAN_x4plus; on a CPU the compact realesr-animevideov3)",
    )
    preload: bool = _setting(False, "load the default model at start instead of on the first job")
    max_resident_models: int = _setting(1, "how many models stay loaded at once")
    # Limits
    max_frame_bytes: int = _setting(64 * 1024 * 1024, "largest accepted websocket message, bytes")
    max_image_side: int = _setting(2048, "largest requested width or height, pixels")
    max_steps: int = _setting(100, "most sampling steps a request may ask for")
    max_image_pixels: int = _setting(2048 * 2048, "largest requested width * height, pixels")
    max_prompt_length: int = _setting(4000, "longest prompt or negative prompt, characters")
    max_loras: int = _setting(8, "most LoRAs in one request")
    max_queued_jobs: int = _setting(8, "most queued or running jobs one connection may hold")
    max_queue_total: int = _setting(64, "most queued jobs in the whole daemon")
    result_retention_s: float = _setting(
        900.0, "seconds a finished job's result stays fetchable by its id"
    )
    max_retained_results: int = _setting(64, "most finished results kept for reconnecting clients")
    # Output
    preview_format: str = _setting("jpeg", "image format of step previews", choices=PREVIEW_FORMATS)
    preview_quality: int = _setting(85, "JPEG/WebP quality of step previews (1-100)")
    # Logging
    log_level: str = _setting("info", "log level", choices=LOG_LEVELS)
    log_file: str = _setting("", "log file (default: <log dir>/daemon.log, rotated)")

    # -- derived values ------------------------------------------------------------------

    @property
    def token_path(self) -> Path:
        return Path(self.token_file).expanduser() if self.token_file else paths.token_file()

    @property
    def log_path(self) -> Path:
        return Path(self.log_file).expanduser() if self.log_file else paths.log_dir() / "daemon.log"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    def limits(self) -> Limits:
        """The limits every client is told in `welcome` and every request is checked against."""
        return Limits(
            max_frame_bytes=self.max_frame_bytes,
            max_image_side=self.max_image_side,
            max_image_pixels=self.max_image_pixels,
            max_steps=self.max_steps,
            max_prompt_length=self.max_prompt_length,
            max_queued_jobs=self.max_queued_jobs,
            max_loras=self.max_loras,
        )

    def validate(self) -> None:
        """Raise `ConfigError` naming the first setting whose value is not allowed."""
        if not self.is_loopback and not self.allow_remote:
            raise ConfigError(
                f"host {self.host!r} is not a loopback address; listening on the network needs "
                "--allow-remote (MRFLOW_ALLOW_REMOTE=1, allow_remote = true); clients still need the token"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        positive = (
            "max_frame_bytes",
            "max_image_side",
            "max_steps",
            "max_image_pixels",
            "max_prompt_length",
            "max_loras",
            "max_queued_jobs",
            "max_queue_total",
            "max_resident_models",
            "max_retained_results",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_frame_bytes < 64 * 1024:
            raise ConfigError(f"max_frame_bytes must be at least 65536, got {self.max_frame_bytes}")
        if self.result_retention_s < 0:
            raise ConfigError(f"result_retention_s must be >= 0, got {self.result_retention_s}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(
                f"device must be cpu, cuda, cuda:N or mps (or empty), got {self.device!r}"
            )
        if self.dtype and self.dtype.lower() not in DTYPE_NAMES:
            raise ConfigError(
                f"dtype must be one of {', '.join(DTYPE_NAMES)} (or empty), got {self.dtype!r}"
            )
        if not 1 <= len(self.model) <= MODEL_NAME_LIMIT:  # it is sent as a protocol Name
            raise ConfigError(
                f"model must be 1-{MODEL_NAME_LIMIT} characters (a name, or a path that "
                f"short), got {len(self.model)}"
            )
        if not 1 <= self.preview_quality <= 100:
            raise ConfigError(f"preview_quality must be 1-100, got {self.preview_quality}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(
                    f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}"
                )


# -- reading values -----------------------------------------------------------------------


def env_name(setting: str) -> str:
    return "MRFLOW_" + setting.upper()


def _field_kind(f: dataclasses.Field[Any]) -> type:
    return type(setting_default(f))


def _coerce(name: str, kind: type, value: Any, source: str) -> Any:
    """Turn a TOML value or an environment string into the setting's type."""

    def fail(allowed: str) -> ConfigError:
        return ConfigError(f"{name} from {source} must be {allowed}, got {value!r}")

    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off", ""}:
            return False
        raise fail("true or false")
    if kind is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise fail("an integer") from None
        raise fail("an integer")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise fail("a number") from None
        raise fail("a number")
    if kind is list:
        if isinstance(value, str):  # environment: comma-separated
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
        raise fail("a list of strings")
    if isinstance(value, str):
        return value
    raise fail("a string")


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML file (top level or a `[daemon]` table); {} when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    table = data.get("daemon", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [daemon] must be a table")
    return table


def load_config(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    read_file: bool = True,
) -> DaemonConfig:
    """Defaults < file < environment < overrides (command-line flags that were given).

    `overrides` maps setting names to already-typed values; None values are skipped,
    so an argparse namespace of flags that were not given can be passed as is.
    `read_file=False` reads no config file at all (a private daemon, such as the demo's).
    """
    path = config_file if config_file is not None else paths.config_file()
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(DaemonConfig)}
    values: dict[str, Any] = {}

    for key, raw in (read_config_file(path) if read_file else {}).items():
        if key not in fields:
            allowed = ", ".join(fields)
            raise ConfigError(f"config file {path}: unknown setting {key!r}; allowed: {allowed}")
        values[key] = _coerce(key, _field_kind(fields[key]), raw, f"config file {path}")

    for name, f in fields.items():
        variable = env_name(name)
        if variable in environ:
            values[name] = _coerce(name, _field_kind(f), environ[variable], f"${variable}")

    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in fields:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(
            name, _field_kind(fields[name]), value, f"--{name.replace('_', '-')}"
        )

    config = DaemonConfig(**values)
    config.validate()
    return config


def describe_settings() -> str:
    """One line per setting (TOML key, environment variable, default), for `mrflow serve --help`."""
    lines = []
    for f in dataclasses.fields(DaemonConfig):
        default = setting_default(f)
        shown = "" if default in ("", []) else f" (default {default!r})"
        lines.append(f"  {f.name:<22} {env_name(f.name):<30} {f.metadata['help']}{shown}")
    return "\n".join(lines)

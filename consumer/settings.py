"""All configuration, read once from the environment and validated before anything starts."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self, get_args
from urllib.parse import urlsplit

from pydantic import (
    AnyHttpUrl,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from consumer.broker_address import normalise_broker_list
from consumer.errors import ConfigurationError

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class _CaseInsensitiveEnum(StrEnum):
    """An enum setting that accepts its values in any case (`LOG_LEVEL=debug`)."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        wanted = str(value).casefold()
        return next((member for member in cls if member.value.casefold() == wanted), None)


class SecurityProtocol(_CaseInsensitiveEnum):
    """Kafka's security protocols, as aiokafka names them."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(_CaseInsensitiveEnum):
    """SASL mechanisms aiokafka supports."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    OAUTHBEARER = "OAUTHBEARER"


class HttpTransport(_CaseInsensitiveEnum):
    """The transport under the httpx client API."""

    AIOHTTP = "aiohttp"
    HTTPX = "httpx"


class LogFormat(_CaseInsensitiveEnum):
    """How log lines are rendered."""

    JSON = "json"
    CONSOLE = "console"


class LogLevel(_CaseInsensitiveEnum):
    """The least severe level that is logged."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def require_safe_url(url: str) -> str:
    """Refuse a URL that would send credentials in clear text to anything but this machine."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS:
        return url
    raise ValueError("must be an https URL (http is allowed only for 127.0.0.1/localhost)")


FILE_SUFFIX = "_file"


def _is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr or SecretStr in get_args(field.annotation)


class SecretFileProblem:
    """Why a secret could not be taken from its file; validation reports it under the setting."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def read_secret_file(setting: str, path: str) -> str | SecretFileProblem:
    """The secret held in a file (Docker and Kubernetes secrets), less one trailing newline."""
    name = f"{setting.upper()}{FILE_SUFFIX.upper()}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        # strerror, not str(error): the message names the path once and carries no content.
        return SecretFileProblem(f"cannot read {name} {path}: {error.strerror or 'unreadable'}")
    except UnicodeDecodeError:
        return SecretFileProblem(f"{name} {path} is not UTF-8 text")
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


class SecretFilesSource(PydanticBaseSettingsSource):
    """Passes `<NAME>_FILE` environment variables of every secret setting on to validation."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` reads every secret's file variable at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        environment = {name.lower(): value for name, value in os.environ.items()}
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            key = f"{name}{FILE_SUFFIX}"
            if _is_secret(field) and key in environment:
                found[key] = environment[key]
        return found


class KafkaSettings(BaseSettings):
    """The Kafka settings alone: what `send` and `audit` need, and what `run` shares with them."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", frozen=True
    )

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_input_topic: str = "idp.role-changes"
    kafka_audit_topic: str = "cxone.role-sync.audit"
    kafka_dlq_topic: str = "idp.role-changes.dlq"
    # The group's mass-revocation ledger (compacted): what each partition spent in the window.
    kafka_guard_topic: str = "cxone.role-sync.guard"
    kafka_group_id: str = "cxone-role-sync"
    kafka_security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_sasl_oauth_token_file: Path | None = None
    # A larger input record is refused unparsed (`too_large`); no record sent is larger either.
    kafka_max_record_bytes: Annotated[int, Field(ge=16_384, le=104_857_600)] = 1_048_576

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, plus the `<NAME>_FILE` variables of the secret settings."""
        return (
            init_settings,
            SecretFilesSource(settings_cls),
            env_settings,
            dotenv_settings,
            file_secret_settings,
        )

    @classmethod
    def secret_fields(cls) -> tuple[str, ...]:
        """The names of every secret setting (each may also come from `<NAME>_FILE`)."""
        return tuple(name for name, field in cls.model_fields.items() if _is_secret(field))

    def secrets(self) -> list[SecretStr]:
        """The value of every secret setting that is set (for log redaction)."""
        values = (getattr(self, name) for name in self.secret_fields())
        return [value for value in values if isinstance(value, SecretStr)]

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        values = dict(data)
        for name in cls.secret_fields():
            path = values.pop(f"{name}{FILE_SUFFIX}", None)
            if path is None or path == "":
                continue
            if values.get(name) not in (None, ""):
                file_name = f"{name.upper()}{FILE_SUFFIX.upper()}"
                values[name] = SecretFileProblem(f"also set as {file_name}; set only one")
            else:
                values[name] = read_secret_file(name, str(path))
        return values

    @field_validator("*", mode="before")
    @classmethod
    def _secret_file_problem(cls, value: Any) -> Any:
        # Reported as an error of the setting itself, beside any other setting's error.
        if isinstance(value, SecretFileProblem):
            raise ValueError(value.reason)
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        return normalise_broker_list(value)

    @field_validator("kafka_sasl_password", "kafka_ssl_key_password")
    @classmethod
    def _non_empty_kafka_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _cafile_readable(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(value))
        except PermissionError:
            raise ValueError(f"cannot read {value}") from None
        except (ssl.SSLError, OSError, ValueError):
            raise ValueError(f"{value} is not a PEM CA bundle") from None
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem_at_once(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Settings that depend on others are judged on what was given, so they are reported
        # beside any malformed setting instead of in a second round once it is fixed.
        problems = cls._dependency_problems(data) if isinstance(data, dict) else []
        try:
            settings = handler(data)
        except ValidationError as error:
            # A setting with an error of its own is named once, by that error.
            named = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
            unrelated = [text for names, text in problems if not named & set(names)]
            if not unrelated:
                raise
            raise _with_problems(error, unrelated) from None
        if problems:
            raise ValueError("\n".join(text for _, text in problems))
        return settings

    @classmethod
    def _dependency_problems(cls, given: Mapping[str, Any]) -> list[Problem]:
        """Kafka settings that need another one that is missing, one line each."""
        problems: list[Problem] = []
        protocol = str(given.get("kafka_security_protocol") or "").upper()
        mechanism = str(given.get("kafka_sasl_mechanism") or "").upper()
        if protocol.startswith("SASL") and not mechanism:
            problems.append(
                (
                    ("kafka_security_protocol", "kafka_sasl_mechanism"),
                    "KAFKA_SASL_MECHANISM is required with a SASL security protocol",
                )
            )
        if _given(given, "kafka_ssl_certfile") != _given(given, "kafka_ssl_keyfile"):
            problems.append(
                (
                    ("kafka_ssl_certfile", "kafka_ssl_keyfile"),
                    "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together",
                )
            )
        if _given(given, "kafka_ssl_key_password") and not _given(given, "kafka_ssl_keyfile"):
            problems.append(
                (
                    ("kafka_ssl_key_password", "kafka_ssl_keyfile"),
                    "KAFKA_SSL_KEY_PASSWORD needs KAFKA_SSL_KEYFILE",
                )
            )
        if mechanism == SaslMechanism.OAUTHBEARER.value:
            if not _given(given, "kafka_sasl_oauth_token_file"):
                problems.append(
                    (
                        ("kafka_sasl_mechanism", "kafka_sasl_oauth_token_file"),
                        "KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SASL_OAUTH_TOKEN_FILE "
                        "(a file holding the bearer token)",
                    )
                )
        elif mechanism and not (
            _given(given, "kafka_sasl_username") and _given(given, "kafka_sasl_password")
        ):
            problems.append(
                (
                    ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"),
                    f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SASL_USERNAME "
                    "and KAFKA_SASL_PASSWORD",
                )
            )
        return problems

    @model_validator(mode="after")
    def _files_exist(self) -> Self:
        """Mutual TLS and OAUTHBEARER files that are not there stop start-up here."""
        # The CA file has a field validator of its own, which also reads it.
        for name in ("kafka_ssl_certfile", "kafka_ssl_keyfile", "kafka_sasl_oauth_token_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name.upper()}: no such file: {path}")
        return self


Problem = tuple[tuple[str, ...], str]
"""A setting that needs another: the settings involved, and the line that says so."""


def _given(given: Mapping[str, Any], name: str) -> bool:
    """Whether a setting was given a value, directly or (a secret) as `<NAME>_FILE`."""
    return any(given.get(key) not in (None, "") for key in (name, f"{name}{FILE_SUFFIX}"))


def _with_problems(error: ValidationError, problems: list[str]) -> ValidationError:
    """The validation error with the dependency problems added, as errors of no one setting."""
    details: list[InitErrorDetails] = [
        {
            "type": item["type"],
            "loc": item["loc"],
            "input": item["input"],
            "ctx": item.get("ctx", {}),
        }
        for item in error.errors()
    ]
    details += [
        {"type": "value_error", "loc": (), "input": None, "ctx": {"error": ValueError(problem)}}
        for problem in problems
    ]
    return ValidationError.from_exception_data(error.title, details)


class Settings(KafkaSettings):
    """Every setting of the service; environment variable names are the contract."""

    cxone_scim_base_url: str
    cxone_token_url: str | None = None
    cxone_issuer_url: str | None = None
    cxone_client_id: Annotated[str, Field(min_length=1)]
    cxone_client_secret: SecretStr
    cxone_access_key_id: str | None = None
    cxone_access_key_secret: SecretStr | None = None
    cxone_required_scopes: str = ""
    cxone_http_transport: HttpTransport = HttpTransport.AIOHTTP
    cxone_request_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0

    sync_max_concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    sync_rate_limit_per_minute: Annotated[int, Field(ge=0)] = 0
    # The part of the ceiling set aside for a replay running beside the group (0 = none).
    sync_replay_rate_share: Annotated[float, Field(ge=0.0, le=0.9)] = 0.0
    sync_dry_run: bool = False
    sync_shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 30.0
    sync_max_uncommitted_per_partition: Annotated[int, Field(ge=1)] = 10_000
    policy_file: Path

    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9400
    # A scraper in another container must reach the port, so every interface by default.
    metrics_host: Annotated[str, Field(min_length=1)] = "0.0.0.0"  # noqa: S104
    admin_token: SecretStr | None = None
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.JSON

    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None

    # When set, an approval must carry a valid HMAC-SHA256 signature made with this key.
    approval_hmac_key: SecretStr | None = None

    tansu_bin: str | None = None

    @field_validator("cxone_scim_base_url")
    @classmethod
    def _scim_base_url(cls, value: str) -> str:
        AnyHttpUrl(value)
        require_safe_url(value)
        value = value.rstrip("/")
        if not value.endswith("/scim/v2"):
            raise ValueError("must end in /scim/v2")
        return value

    @field_validator("cxone_token_url", "cxone_issuer_url", "webhook_url")
    @classmethod
    def _safe_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        AnyHttpUrl(value)
        return require_safe_url(value)

    @field_validator(
        "cxone_client_secret",
        "cxone_access_key_secret",
        "admin_token",
        "approval_hmac_key",
        "webhook_secret",
    )
    @classmethod
    def _non_empty_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("admin_token")
    @classmethod
    def _presentable_token(cls, value: SecretStr | None) -> SecretStr | None:
        # A bearer token arrives in a header, whose value loses its outer blanks on the way:
        # a token that begins or ends with one could never be presented, so it stops start-up.
        token = "" if value is None else value.get_secret_value()
        if token != token.strip() or not token.isprintable():
            raise ValueError(
                "must not begin or end with whitespace, nor hold control characters "
                "(a bearer token cannot carry them)"
            )
        return value

    @field_validator("policy_file")
    @classmethod
    def _policy_exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @classmethod
    def _dependency_problems(cls, given: Mapping[str, Any]) -> list[Problem]:
        """Every setting that needs another one that is missing, one line each."""
        problems = super()._dependency_problems(given)
        if not (_given(given, "cxone_token_url") or _given(given, "cxone_issuer_url")):
            problems.append(
                (
                    ("cxone_token_url", "cxone_issuer_url"),
                    "CXONE_TOKEN_URL (or CXONE_ISSUER_URL for discovery) is required",
                )
            )
        if _given(given, "cxone_access_key_id") != _given(given, "cxone_access_key_secret"):
            problems.append(
                (
                    ("cxone_access_key_id", "cxone_access_key_secret"),
                    "CXONE_ACCESS_KEY_ID and CXONE_ACCESS_KEY_SECRET go together",
                )
            )
        if _given(given, "webhook_url") and not _given(given, "webhook_secret"):
            problems.append(
                (
                    ("webhook_url", "webhook_secret"),
                    "WEBHOOK_SECRET is required when WEBHOOK_URL is set",
                )
            )
        return problems

    @property
    def required_scopes(self) -> frozenset[str]:
        """The scopes a token must carry, when the token endpoint reports any."""
        return frozenset(self.cxone_required_scopes.split())


def load_settings(**overrides: object) -> Settings:
    """Read the settings once; a bad or missing one raises one line naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None


def load_kafka_settings(**overrides: object) -> KafkaSettings:
    """Read only the Kafka settings, for commands that neither call CXone nor apply a policy."""
    try:
        return KafkaSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None


def describe_validation_error(error: ValidationError) -> str:
    """One line per offending setting, named by its environment variable; all of them at once."""
    lines: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        location = [str(part) for part in item["loc"]]
        name = location[0].upper() if location else ""
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            lines.setdefault(name, f"configuration error: {name} is required but not set")
        elif not location:
            # A check across settings may name several problems, one per line.
            for problem in message.split("\n"):
                lines.setdefault(problem, f"configuration error: {problem}")
        else:
            # Never echo the rejected value: it might be a secret. A setting is named once,
            # even when a union type reports one error per alternative.
            lines.setdefault(name, f"configuration error: {name}: {message}")
    return "\n".join(lines.values())

"""All configuration, read once from the environment and validated before anything starts."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class KafkaSettings(BaseSettings):
    """The Kafka settings alone: what `send` and `audit` need, and what `run` shares with them."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", frozen=True
    )

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_input_topic: str = "idp.role-changes"
    kafka_audit_topic: str = "cxone.role-sync.audit"
    kafka_dlq_topic: str = "idp.role-changes.dlq"
    kafka_group_id: str = "cxone-role-sync"
    kafka_security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None

    @field_validator("kafka_sasl_password")
    @classmethod
    def _non_empty_kafka_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _consistent_kafka(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL") and self.kafka_sasl_mechanism is None:
            raise ValueError("KAFKA_SASL_MECHANISM is required with a SASL security protocol")
        return self


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
    sync_dry_run: bool = False
    sync_shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 30.0
    policy_file: Path

    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9400
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.JSON

    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None

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

    @field_validator("cxone_client_secret", "cxone_access_key_secret")
    @classmethod
    def _non_empty_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("policy_file")
    @classmethod
    def _policy_exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = []
        if self.cxone_token_url is None and self.cxone_issuer_url is None:
            problems.append("CXONE_TOKEN_URL (or CXONE_ISSUER_URL for discovery) is required")
        if (self.cxone_access_key_id is None) != (self.cxone_access_key_secret is None):
            problems.append("CXONE_ACCESS_KEY_ID and CXONE_ACCESS_KEY_SECRET go together")
        if self.webhook_url is not None and self.webhook_secret is None:
            problems.append("WEBHOOK_SECRET is required when WEBHOOK_URL is set")
        if problems:
            # Every problem at once, one per line (see describe_validation_error).
            raise ValueError("\n".join(problems))
        return self

    @property
    def uses_password_grant(self) -> bool:
        """CXone back-end apps authenticate with an access key through the password grant."""
        return self.cxone_access_key_id is not None

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

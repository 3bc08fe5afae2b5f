"""The settings of `ingress`: every setting of `run`, plus the SCIM endpoint's own (`INGRESS_*`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from consumer.errors import ConfigurationError
from consumer.settings import (
    Problem,
    Settings,
    _CaseInsensitiveEnum,
    _given,
    describe_validation_error,
)

__all__ = ["IngressSettings", "UserIdRule", "load_ingress_settings"]

# A bearer token shorter than this can be guessed; IdPs generate long ones anyway.
MIN_TOKEN_LENGTH = 32


class UserIdRule(_CaseInsensitiveEnum):
    """How the CXone user id of an IdP user is found."""

    USER_NAME = "user_name"  # CXone's user whose userName equals the IdP's, by SCIM search
    EXTERNAL_ID = "external_id"  # the IdP's externalId is the CXone id


class IngressSettings(Settings):
    """Every setting of the SCIM ingress; environment variable names are the contract."""

    ingress_token: SecretStr
    ingress_host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    ingress_port: Annotated[int, Field(ge=0, le=65535)] = 9410
    ingress_tls_certfile: Path | None = None
    ingress_tls_keyfile: Path | None = None
    # Plain HTTP on a non-loopback address, for a TLS-terminating proxy in front.
    ingress_behind_tls_proxy: bool = False
    ingress_state_topic: Annotated[str, Field(min_length=1, max_length=249)] = (
        "cxone-role-sync.ingress.state"
    )
    # The IdP, named in each event's `source` and as the approver of an approving group.
    ingress_source: Annotated[
        str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    ] = "scim-ingress"
    ingress_user_id: UserIdRule = UserIdRule.USER_NAME
    ingress_max_body_bytes: Annotated[int, Field(ge=4096, le=16_777_216)] = 1_048_576
    ingress_rate_limit_per_minute: Annotated[int, Field(ge=1)] = 1200
    ingress_retry_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0

    @field_validator("ingress_token")
    @classmethod
    def _strong_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if token != token.strip() or not token.isprintable():
            raise ValueError(
                "must not begin or end with whitespace, nor hold control characters "
                "(a bearer token cannot carry them)"
            )
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters")
        return value

    @classmethod
    def _dependency_problems(cls, given: Mapping[str, Any]) -> list[Problem]:
        """Every ingress setting that needs another one, one line each."""
        problems = super()._dependency_problems(given)
        if _given(given, "ingress_tls_certfile") != _given(given, "ingress_tls_keyfile"):
            problems.append(
                (
                    ("ingress_tls_certfile", "ingress_tls_keyfile"),
                    "INGRESS_TLS_CERTFILE and INGRESS_TLS_KEYFILE go together",
                )
            )
        return problems

    @model_validator(mode="after")
    def _no_clear_text_off_this_machine(self) -> Self:
        """The token crosses the network: plain HTTP only on loopback or behind a TLS proxy."""
        for name in ("ingress_tls_certfile", "ingress_tls_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name.upper()}: no such file: {path}")
        if self.tls or self.ingress_behind_tls_proxy or _is_loopback(self.ingress_host):
            return self
        raise ValueError(
            f"INGRESS_HOST: {self.ingress_host} is not a loopback address: serve TLS "
            "(INGRESS_TLS_CERTFILE and INGRESS_TLS_KEYFILE) or set INGRESS_BEHIND_TLS_PROXY=true "
            "when a TLS-terminating proxy is the only way in"
        )

    @property
    def tls(self) -> bool:
        """Whether the endpoint serves TLS itself."""
        return self.ingress_tls_certfile is not None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_ingress_settings(**overrides: object) -> IngressSettings:
    """Read the settings once; a bad or missing one raises one line naming it."""
    try:
        return IngressSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None

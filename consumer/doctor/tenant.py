"""The CXone checks: a token with the needed scopes, a filter search, and user reads.

Only reads go to SCIM (`GET /Users?filter=...`, `GET /Users/{id}`); the one POST is the token
request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from consumer.doctor.findings import Finding, Verdict, fail, listing, ok, warn
from consumer.doctor.roles import TenantRoles
from consumer.errors import SyncError, UserNotFound
from consumer.scim.auth import CxoneAuth, TokenProvider, token_provider
from consumer.scim.client import (
    PROBE_FILTER,
    SCIM_MEDIA_TYPE,
    TRANSPORT_ERRORS,
    ScimClient,
    build_http_client,
    error_for_response,
)
from consumer.settings import Settings

READ_CONCURRENCY = 4
TIMEOUT_SECONDS = 15.0


@dataclass
class TenantReport:
    """The CXone findings, and the roles of the users read (None when SCIM was not tried)."""

    findings: list[Finding] = field(default_factory=list)
    roles: TenantRoles | None = None


async def check_tenant(settings: Settings, user_ids: list[str]) -> TenantReport:
    """The token, then the search and the reads; without a token, SCIM is not tried."""
    report = TenantReport()
    http = build_http_client(
        settings.cxone_http_transport,
        timeout=min(settings.cxone_request_timeout_seconds, TIMEOUT_SECONDS),
        max_connections=READ_CONCURRENCY,
    )
    try:
        tokens = token_provider(settings, http)
        token = await _check_token(tokens, settings)
        report.findings.append(token)
        if token.verdict is Verdict.FAIL:
            return report
        scim = ScimClient(settings.cxone_scim_base_url, http, auth=CxoneAuth(tokens))
        documents, read = await _read_users(scim, user_ids)
        report.findings.append(await _check_search(http, tokens, settings, documents))
        report.findings.append(read)
        report.roles = TenantRoles.of(
            (str(document.get("id")), _role_values(document)) for document in documents
        )
    finally:
        await http.aclose()
    return report


async def _check_token(tokens: TokenProvider, settings: Settings) -> Finding:
    check = "cxone token"
    endpoint = settings.cxone_token_url or f"discovery at {settings.cxone_issuer_url}"
    try:
        await tokens.token()
    except SyncError as error:
        return fail(check, f"{endpoint}: {error}; SCIM checks not run")
    granted = tokens.granted_scopes
    issued = f"{endpoint} issued a token ({tokens.grant_type} grant"
    if not settings.required_scopes:
        scopes = f", scopes {' '.join(sorted(granted))}" if granted else ""
        return ok(check, f"{issued}{scopes}); CXONE_REQUIRED_SCOPES is empty, none required")
    if granted is None:
        return warn(
            check,
            f"{issued}) but did not say its scopes: CXONE_REQUIRED_SCOPES "
            f"({' '.join(sorted(settings.required_scopes))}) not verified",
        )
    return ok(check, f"{issued}) with every required scope: {' '.join(sorted(granted))}")


async def _read_users(
    scim: ScimClient, user_ids: list[str]
) -> tuple[list[dict[str, Any]], Finding]:
    """GET each user (a few at a time); 404s are counted, the first other failure reported."""
    check = "scim read"
    if not user_ids:
        return [], warn(
            check,
            "no user to read: the input topic's recent records name none and no --users was given",
        )
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def read(user_id: str) -> dict[str, Any] | SyncError:
        async with gate:
            try:
                return (await scim.get_user(user_id)).document
            except SyncError as error:
                return error

    answers = await asyncio.gather(*(read(user_id) for user_id in user_ids))
    documents = [answer for answer in answers if isinstance(answer, dict)]
    missing = [
        user_id
        for user_id, answer in zip(user_ids, answers, strict=True)
        if isinstance(answer, UserNotFound)
    ]
    failures = [
        answer
        for answer in answers
        if isinstance(answer, SyncError) and not isinstance(answer, UserNotFound)
    ]
    if failures:
        return documents, fail(
            check,
            f"{len(failures)} of {len(user_ids)} user reads failed, e.g. {failures[0]}",
        )
    if missing:
        return documents, warn(
            check,
            f"read {len(documents)} users; {len(missing)} are not in CXone: "
            f"{listing(missing, limit=4)}",
        )
    return documents, ok(check, f"read {len(documents)} users")


async def _check_search(
    http: httpx.AsyncClient,
    tokens: TokenProvider,
    settings: Settings,
    documents: list[dict[str, Any]],
) -> Finding:
    """A filter search: by the userName of a user read, when there is one, else an empty one."""
    check = "scim search"
    named = next((d for d in documents if isinstance(d.get("userName"), str)), None)
    query = f'userName eq "{_quoted(named["userName"])}"' if named is not None else PROBE_FILTER
    url = settings.cxone_scim_base_url + "/Users"
    try:
        response = await http.get(
            url,
            params={"filter": query, "count": "5"},
            headers={"Accept": SCIM_MEDIA_TYPE},
            auth=CxoneAuth(tokens),
        )
    except SyncError as error:
        return fail(check, f"GET {url}: {error}")
    except TRANSPORT_ERRORS as error:
        return fail(check, f"GET {url}: {type(error.__cause__ or error).__name__}")
    if response.status_code == 404:
        # A search has no user to miss: the base URL points at no SCIM service.
        return fail(
            check,
            f"GET {url} answered 404: CXONE_SCIM_BASE_URL is not the tenant's SCIM base "
            "(it ends in /scim/v2)",
        )
    refused = error_for_response(response, now=datetime.now(UTC))
    if refused is not None:
        return fail(check, str(refused))
    try:
        body = response.json()
        found = [str(item.get("id")) for item in body.get("Resources") or []]
    except (ValueError, AttributeError):
        return fail(check, f"GET {url}: the answer is not a SCIM ListResponse")
    if named is None:
        return ok(check, f"answers a filter search ({query}: {len(found)} found)")
    if str(named.get("id")) not in found:
        return warn(check, f"answers, but {query} did not find user {named.get('id')}")
    return ok(check, f"{query} finds user {named.get('id')}")


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _role_values(document: dict[str, Any]) -> list[str]:
    roles = document.get("roles") or []
    return [str(role["value"]) for role in roles if isinstance(role, dict) and "value" in role]

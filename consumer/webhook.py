"""The optional webhook: every audit event POSTed, HMAC-signed, to `WEBHOOK_URL`.

The audit topic is the record; the webhook is a courtesy copy. So it never holds up the stream:
`notify` only enqueues, a few background tasks deliver, and a notification that cannot be
delivered (queue full, refused, retries spent, shutdown) is dropped, counted in
`cxone_sync_webhook_failures_total` and logged without its body, the URL or the secret.

The receiver checks `X-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the exact body bytes
keyed with `WEBHOOK_SECRET`; the body's `id` is stable across redeliveries, for deduplication.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import stamina
import structlog
from pydantic import SecretStr
from stamina.instrumentation import RetryDetails

from consumer import __version__
from consumer.errors import ConfigurationError
from consumer.events import SyncResult, audit_event_of
from consumer.observability.metrics import WEBHOOK_FAILURES
from consumer.observability.retries import install_retry_hook
from consumer.scim.client import parse_retry_after
from consumer.settings import Settings

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Signature-256"
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_WORKERS = 2


def sign(body: bytes, secret: str | SecretStr) -> str:
    """The `X-Signature-256` value of a body: `sha256=` and the hex HMAC-SHA256 of its bytes."""
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try one notification: attempts, backoff between them, and a per-POST timeout."""

    attempts: int = 5
    wait_initial: float = 0.5
    wait_max: float = 10.0
    wait_jitter: float = 0.5
    timeout: float = 10.0


class _Undelivered(Exception):
    """A POST that may succeed later: a network error, 408, 429 or 5xx."""

    def __init__(self, what: str, *, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.retry_after = retry_after


class _Refused(Exception):
    """A POST that repeating cannot fix: any other non-2xx answer."""


class WebhookNotifier:
    """Posts each result's audit event to the webhook from background tasks; never blocks."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        secret: SecretStr,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        workers: int = DEFAULT_WORKERS,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        if queue_size < 1 or workers < 1:
            raise ValueError("queue_size and workers must be at least 1")
        self._http = http
        self._url = url
        self._secret = secret
        self._queue: asyncio.Queue[SyncResult] = asyncio.Queue(maxsize=queue_size)
        self._worker_count = workers
        self._policy = policy or DeliveryPolicy()
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False

    def __repr__(self) -> str:
        # Neither the URL (webhook URLs often embed a token) nor the secret.
        return f"WebhookNotifier(pending={self.pending}, closed={self._closed})"

    @property
    def pending(self) -> int:
        """Notifications queued and not yet taken up for delivery."""
        return self._queue.qsize()

    def notify(self, result: SyncResult) -> None:
        """Queue one result for delivery; when the queue is full or closed, drop and count it."""
        if self._closed:
            self._drop(result, "closed")
            return
        try:
            self._queue.put_nowait(result)
        except asyncio.QueueFull:
            self._drop(result, "queue_full")

    async def start(self) -> None:
        """Start the delivery tasks; notifications queued before now are delivered too."""
        if self._workers or self._closed:
            return
        install_retry_hook("webhook", (_Undelivered,), log_retry)
        self._workers = [
            asyncio.create_task(self._work(), name=f"webhook-{n}")
            for n in range(self._worker_count)
        ]

    async def aclose(self, grace: float = 5.0) -> None:
        """Stop taking notifications, deliver the queued ones for up to `grace` seconds, stop."""
        self._closed = True
        if self._workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=grace)
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
        while not self._queue.empty():
            self._drop(self._queue.get_nowait(), "shutdown")
            self._queue.task_done()

    async def _work(self) -> None:
        while True:
            result = await self._queue.get()
            try:
                await self._deliver(result)
            except asyncio.CancelledError:
                self._drop(result, "shutdown")
                raise
            except Exception as error:
                # One odd notification must not end deliveries for the rest of the run.
                self._drop(result, "error", error=type(error).__name__)
            finally:
                self._queue.task_done()

    async def _deliver(self, result: SyncResult) -> None:
        body = audit_event_of(result).model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"cxone-role-sync/{__version__}",
            SIGNATURE_HEADER: sign(body, self._secret),
        }
        policy = self._policy
        try:
            async for attempt in stamina.retry_context(
                on=self._backoff,
                attempts=policy.attempts,
                timeout=None,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_jitter,
            ):
                with attempt:
                    await self._post(body, headers)
        except _Undelivered as error:
            self._drop(result, "retries_exhausted", error=str(error))
        except _Refused as error:
            self._drop(result, "refused", error=str(error))
        else:
            log.debug("webhook.delivered", event_id=result.event_id)

    async def _post(self, body: bytes, headers: dict[str, str]) -> None:
        try:
            response = await self._http.request(
                "POST",
                self._url,
                content=body,
                headers=headers,
                # Whatever auth the shared client carries (a CXone token) stays off this request.
                auth=None,
                timeout=self._policy.timeout,
            )
        except httpx.TransportError as error:
            # The type only: httpx messages can repeat the URL, which may embed a token.
            raise _Undelivered(type(error).__name__) from None
        except httpx.HTTPError as error:
            raise _Refused(type(error).__name__) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), now=datetime.now(UTC)
            )
            raise _Undelivered(f"HTTP {status}", retry_after=retry_after)
        raise _Refused(f"HTTP {status}")

    def _backoff(self, error: Exception) -> bool | float:
        if not isinstance(error, _Undelivered):
            return False
        if error.retry_after is not None:
            return min(error.retry_after, self._policy.wait_max)
        return True

    @staticmethod
    def _drop(result: SyncResult, reason: str, **fields: str) -> None:
        WEBHOOK_FAILURES.inc()
        log.warning(
            "webhook.dropped",
            reason=reason,
            event_id=result.event_id,
            user_id=result.user_id,
            **fields,
        )


def log_retry(details: RetryDetails) -> None:
    """The webhook's retry hook: say why a notification is tried again, at INFO."""
    log.info(
        "webhook.retry",
        retry=details.retry_num,
        wait_seconds=round(details.wait_for, 3),
        error=str(details.caused_by),
    )


def build_webhook(settings: Settings, http: httpx.AsyncClient) -> WebhookNotifier | None:
    """The notifier `WEBHOOK_URL` asks for, or None when it is not set."""
    if settings.webhook_url is None:
        return None
    if settings.webhook_secret is None:
        raise ConfigurationError("configuration error: WEBHOOK_SECRET is required")
    return WebhookNotifier(http, settings.webhook_url, settings.webhook_secret)

"""stamina's retry instrumentation, split by subsystem.

stamina calls its on-retry hooks for every retry of the process. So one hook is installed, and
it hands each retry to the subsystem whose errors caused it (the SCIM client, the webhook, the
Kafka publisher); each subsystem counts and logs under its own module's logger. A retry no
subsystem claimed is still logged, under this module, rather than lost or misfiled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import stamina
import structlog
from stamina.instrumentation import RetryDetails

log = structlog.get_logger(__name__)

RetryHook = Callable[[RetryDetails], None]


@dataclass(frozen=True)
class _Subsystem:
    errors: tuple[type[BaseException], ...]
    hook: RetryHook


_SUBSYSTEMS: dict[str, _Subsystem] = {}


def install_retry_hook(
    subsystem: str, errors: tuple[type[BaseException], ...], hook: RetryHook
) -> None:
    """Route the retries caused by `errors` to `hook`; installing a subsystem again replaces it."""
    _SUBSYSTEMS[subsystem] = _Subsystem(errors, hook)
    # Ours replace stamina's defaults, which would log every retry a second time, unfiltered.
    stamina.instrumentation.set_on_retry_hooks([route_retry])


def route_retry(details: RetryDetails) -> None:
    """The one process-wide stamina hook: hand the retry to the subsystem that owns its error."""
    for subsystem in _SUBSYSTEMS.values():
        if isinstance(details.caused_by, subsystem.errors):
            subsystem.hook(details)
            return
    log.info(
        "retry.scheduled",
        retried=details.name,
        retry=details.retry_num,
        wait_seconds=round(details.wait_for, 3),
        error=type(details.caused_by).__name__,
    )

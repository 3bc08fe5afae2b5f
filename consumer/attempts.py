"""Retries that cost nothing until something fails: the first attempt runs bare.

Building a stamina retry context (and the tenacity machinery under it) for every request and
every publish cost more CPU than the request's own bookkeeping, while nearly every attempt
succeeds at once. `first_then_retried` runs the first attempt on its own; only a failure that
`on` retries enters stamina, which is handed that very failure as its own first attempt's, so
the backoff, the attempt numbers, the limits and the retry hooks are exactly what a stamina loop
around every attempt would have given.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina

T = TypeVar("T")

RetryOn = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool | float]
"""What stamina's `on` takes: error types to retry, or a hook deciding whether and how long."""


def retries(on: RetryOn, error: Exception) -> bool:
    """Whether stamina, given `on`, would retry after `error`."""
    if isinstance(on, type | tuple):
        return isinstance(error, on)
    decision = on(error)
    # A hook's number is a wait: 0.0 still means "retry now", as it does to stamina.
    return decision is not False


async def first_then_retried(
    attempt: Callable[[int], Awaitable[T]],
    *,
    on: RetryOn,
    attempts: int | None,
    wait_initial: float,
    wait_max: float,
    wait_jitter: float = 1.0,
) -> T:
    """`await attempt(1)`; if it fails in a way `on` retries, retry with `attempt(2)`, ... .

    The arguments mean what they mean to `stamina.retry_context`; there is no overall timeout.
    """
    try:
        return await attempt(1)
    except Exception as error:
        if not retries(on, error):
            raise
        failure: Exception | None = error
    async for trial in stamina.retry_context(
        on=on,
        attempts=attempts,
        timeout=None,
        wait_initial=wait_initial,
        wait_max=wait_max,
        wait_jitter=wait_jitter,
    ):
        with trial:
            if failure is not None:
                # stamina takes the bare first attempt's failure as its own first attempt's.
                replayed, failure = failure, None
                raise replayed
            return await attempt(trial.num)
    raise AssertionError("unreachable: stamina returns, raises, or retries")

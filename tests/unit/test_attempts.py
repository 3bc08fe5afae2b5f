"""Tests of `first_then_retried`: a bare first attempt, then exactly what stamina would do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina
from hypothesis import given, settings
from hypothesis import strategies as st
from stamina.instrumentation import RetryDetails

from consumer import attempts as attempts_module
from consumer.attempts import first_then_retried, retries


class Flaky(Exception):
    """A failure the tests retry."""


class Fatal(Exception):
    """A failure the tests never retry."""


@pytest.fixture
def retried() -> Iterator[list[RetryDetails]]:
    """The retries stamina's hooks saw, with no real waiting between attempts."""
    seen: list[RetryDetails] = []
    saved = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([seen.append])
    stamina.set_testing(True, attempts=100, cap=True)
    try:
        yield seen
    finally:
        stamina.set_testing(False)
        stamina.instrumentation.set_on_retry_hooks(saved)


def script(*outcomes: Exception | str) -> tuple[list[int], object]:
    """An attempt raising or returning the outcomes in turn, and the numbers it was called with."""
    calls: list[int] = []

    async def attempt(number: int) -> str:
        calls.append(number)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return calls, attempt


async def test_a_first_success_builds_no_retry_context(
    retried: list[RetryDetails], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attempt that succeeds at once returns its value without entering stamina at all."""

    def no_stamina(**_: object) -> None:
        raise AssertionError("stamina.retry_context was built on the happy path")

    monkeypatch.setattr(attempts_module.stamina, "retry_context", no_stamina)
    calls, attempt = script("done")

    value = await first_then_retried(
        attempt,  # type: ignore[arg-type]
        on=Flaky,
        attempts=None,
        wait_initial=0.1,
        wait_max=1.0,
    )

    assert (value, calls, retried) == ("done", [1], [])


async def test_the_first_failure_is_stamina_s_first_attempt(retried: list[RetryDetails]) -> None:
    """Two failures then a success: attempts 1, 2, 3, and the hooks see retries 1 and 2."""
    first, second = Flaky("one"), Flaky("two")
    calls, attempt = script(first, second, "done")

    value = await first_then_retried(
        attempt,  # type: ignore[arg-type]
        on=Flaky,
        attempts=None,
        wait_initial=0.1,
        wait_max=1.0,
    )

    assert value == "done"
    assert calls == [1, 2, 3]
    assert [(d.retry_num, d.caused_by) for d in retried] == [(1, first), (2, second)]


async def test_a_failure_not_retried_is_raised_from_the_first_attempt(
    retried: list[RetryDetails],
) -> None:
    """An error `on` does not retry leaves after one attempt, with no retry scheduled."""
    calls, attempt = script(Fatal("no"))

    with pytest.raises(Fatal):
        await first_then_retried(
            attempt,  # type: ignore[arg-type]
            on=Flaky,
            attempts=None,
            wait_initial=0.1,
            wait_max=1.0,
        )

    assert (calls, retried) == ([1], [])


async def test_a_failure_not_retried_after_a_retry_ends_the_loop(
    retried: list[RetryDetails],
) -> None:
    """A retried failure, then one `on` refuses: two attempts, that second error raised."""
    calls, attempt = script(Flaky("one"), Fatal("two"))

    with pytest.raises(Fatal, match="two"):
        await first_then_retried(
            attempt,  # type: ignore[arg-type]
            on=Flaky,
            attempts=None,
            wait_initial=0.1,
            wait_max=1.0,
        )

    assert calls == [1, 2]
    assert len(retried) == 1


@settings(max_examples=30, deadline=None)
@given(limit=st.integers(min_value=1, max_value=6), failures=st.integers(min_value=0, max_value=8))
async def test_the_attempt_limit_counts_the_bare_first_attempt(limit: int, failures: int) -> None:
    """With `attempts=limit`, never more than `limit` calls; the last error is raised if spent."""
    stamina.set_testing(True, attempts=100, cap=True)
    try:
        outcomes: list[Exception | str] = [Flaky(str(n)) for n in range(failures)] + ["done"]
        calls, attempt = script(*outcomes)
        call = first_then_retried(
            attempt,  # type: ignore[arg-type]
            on=Flaky,
            attempts=limit,
            wait_initial=0.1,
            wait_max=1.0,
        )
        if failures >= limit:
            with pytest.raises(Flaky, match=f"^{limit - 1}$"):
                await call
            assert calls == list(range(1, limit + 1))
        else:
            assert await call == "done"
            assert calls == list(range(1, failures + 2))
    finally:
        stamina.set_testing(False)


def test_retries_asks_a_hook_as_stamina_would() -> None:
    """A hook's False refuses, True or any wait (0.0 too) retries; types retry by isinstance."""
    assert retries(lambda _: False, Flaky()) is False
    assert retries(lambda _: True, Flaky()) is True
    assert retries(lambda _: 0.0, Flaky()) is True
    assert retries(lambda _: 2.5, Flaky()) is True
    assert retries(Flaky, Flaky()) is True
    assert retries((Fatal, Flaky), Flaky()) is True
    assert retries(Fatal, Flaky()) is False

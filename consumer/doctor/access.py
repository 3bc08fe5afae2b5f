"""What the broker's answers to the write-nothing probes mean, pure.

Kafka checks a principal's permission before anything else in a request, so a request that
could not change anything still answers `*_AUTHORIZATION_FAILED` when the principal lacks it:

- write: a Produce request carrying no record batch at all. Kafka authorizes WRITE on the topic
  first, then refuses the empty request itself (`INVALID_RECORD`); nothing can be appended.
- group: a Heartbeat as a member that does not exist. Kafka authorizes READ on the group first,
  then answers `UNKNOWN_MEMBER_ID`; the group and its members are untouched.
- read: a fetch from the input topic (reading the recent window that names the users to look
  at), which Kafka answers `TOPIC_AUTHORIZATION_FAILED` without READ on the topic.
"""

from __future__ import annotations

from aiokafka import errors

from consumer.doctor.findings import Finding, fail, ok, warn

TOPIC_AUTHORIZATION_FAILED = errors.TopicAuthorizationFailedError.errno
GROUP_AUTHORIZATION_FAILED = errors.GroupAuthorizationFailedError.errno
INVALID_RECORD = 87
"""Kafka's answer to a record batch it will not take; aiokafka has no class for it."""

# The answers that show the permission check passed and the probe was refused for itself.
_WRITE_ALLOWED = frozenset(
    {errors.NoError.errno, INVALID_RECORD, errors.CorruptRecordException.errno}
)
_GROUP_ALLOWED = frozenset(
    {
        errors.NoError.errno,
        errors.UnknownMemberIdError.errno,
        errors.IllegalGenerationError.errno,
        errors.RebalanceInProgressError.errno,
        errors.GroupIdNotFound.errno,
    }
)


def error_name(code: int) -> str:
    """Kafka's name for an error code, e.g. `TOPIC_AUTHORIZATION_FAILED`."""
    if code == INVALID_RECORD:
        return "INVALID_RECORD"
    found = errors.for_code(code)
    if found is errors.UnknownError and code != errors.UnknownError.errno:
        return f"error code {code}"
    return str(found.message)


def judge_write(check: str, topic: str, code: int) -> Finding:
    """The verdict on WRITE to `topic`, from the error code of an empty Produce."""
    if code == TOPIC_AUTHORIZATION_FAILED:
        return fail(check, f"the principal may not WRITE to {topic} ({error_name(code)})")
    if code in _WRITE_ALLOWED:
        return ok(check, f"the principal may WRITE to {topic} (empty probe, nothing written)")
    return warn(
        check,
        f"not proven: the broker answered the empty probe with {error_name(code)}, "
        "not with a permission check (a broker without an authorizer may)",
    )


def judge_group(group: str, code: int) -> Finding:
    """The verdict on READ of consumer group `group`, from a Heartbeat of an unknown member."""
    check = "group"
    if code == GROUP_AUTHORIZATION_FAILED:
        return fail(check, f"the principal may not use group {group} ({error_name(code)})")
    if code in _GROUP_ALLOWED:
        return ok(check, f"the principal may READ group {group} (probe as an unknown member)")
    return warn(check, f"not proven: group {group} probe answered {error_name(code)}")

"""The broker's authorizer refusing the consumer: one line naming the permission it lacks.

Without READ on the consumer group the join fails; without READ on the input topic the first
fetch does. Neither heals by waiting: like a rejected password, each is a configuration error
(exit code 2, one line), never a traceback, and nothing unfinished was committed.
"""

from __future__ import annotations

from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from consumer.errors import ConfigurationError
from consumer.settings import Settings


def access_refused(error: Exception, settings: Settings) -> ConfigurationError | None:
    """The configuration error for an authorization the consumer was refused, else None."""
    if isinstance(error, GroupAuthorizationFailedError):
        return ConfigurationError(
            f"configuration error: KAFKA_GROUP_ID: the broker refuses this principal READ on "
            f"the consumer group {settings.kafka_group_id} (GROUP_AUTHORIZATION_FAILED); "
            "grant it READ on the group"
        )
    if isinstance(error, TopicAuthorizationFailedError):
        return ConfigurationError(
            f"configuration error: KAFKA_INPUT_TOPIC: the broker refuses this principal READ on "
            f"the topic {settings.kafka_input_topic} (TOPIC_AUTHORIZATION_FAILED); "
            "grant it READ on the topic"
        )
    return None

"""Every doctor check, in the order a reader fixes them: policy, Kafka, CXone, roles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from consumer.catalog import Policy, load_policy
from consumer.doctor.findings import Finding, fail, ok
from consumer.doctor.kafka_checks import Window, check_kafka
from consumer.doctor.roles import unheld_roles, unknown_roles
from consumer.doctor.tenant import check_tenant
from consumer.doctor.users import chosen_users, read_users_file
from consumer.errors import ConfigurationError
from consumer.settings import Settings


@dataclass(frozen=True)
class DoctorOptions:
    """What the command line adds to the settings."""

    users_file: Path | None = None
    recent_records: int = 1000
    max_users: int = 200
    instances: int = 1


def check_policy(settings: Settings) -> tuple[Finding, Policy | None]:
    """The policy file loads."""
    try:
        policy = load_policy(settings.policy_file)
    except ConfigurationError as error:
        return fail("policy", str(error)), None
    privileged = sum(1 for role_id in policy.catalog if policy.catalog.is_privileged(role_id))
    return (
        ok(
            "policy",
            f"{settings.policy_file}: {len(policy.catalog)} roles, {privileged} privileged",
        ),
        policy,
    )


async def diagnose(settings: Settings, options: DoctorOptions) -> list[Finding]:
    """Run every check; a `--users` file that cannot be read is a ConfigurationError."""
    listed = read_users_file(options.users_file) if options.users_file is not None else []
    policy_finding, policy = check_policy(settings)
    findings = [policy_finding]
    window = Window(records_per_partition=options.recent_records, max_users=options.max_users)
    guard = policy is not None and policy.mass_revocation_guard is not None
    kafka = await check_kafka(settings, instances=options.instances, window=window, guard=guard)
    findings += kafka.findings
    users = chosen_users(listed, kafka.user_ids, limit=options.max_users)
    tenant = await check_tenant(settings, users)
    findings += tenant.findings
    if policy is not None and tenant.roles is not None:
        findings += [
            unknown_roles(policy.catalog, tenant.roles),
            unheld_roles(policy.catalog, tenant.roles),
        ]
    return findings

"""Tests of the bootstrap broker list: what aiokafka would read, and what it would choke on."""

from __future__ import annotations

import re

import pytest
from aiokafka.conn import collect_hosts
from hypothesis import given
from hypothesis import strategies as st

from consumer.broker_address import (
    BrokerAddress,
    normalise_broker_list,
    parse_broker_addresses,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9092", (BrokerAddress("127.0.0.1", 9092),)),
        ("kafka-1.internal:9093", (BrokerAddress("kafka-1.internal", 9093),)),
        ("localhost", (BrokerAddress("localhost", 9092),)),
        ("[::1]:19092", (BrokerAddress("::1", 19092),)),
        ("[::1]", (BrokerAddress("::1", 9092),)),
        ("::1", (BrokerAddress("::1", 9092),)),
        (
            " a:1 , b_2.example:65535 ",
            (BrokerAddress("a", 1), BrokerAddress("b_2.example", 65535)),
        ),
    ],
)
def test_good_lists_parse_as_aiokafka_reads_them(
    value: str, expected: tuple[BrokerAddress, ...]
) -> None:
    """Each accepted form gives the host and port, the port 9092 when none is given."""
    assert parse_broker_addresses(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must name at least one broker as host:port"),
        ("   ", "must name at least one broker as host:port"),
        ("127.0.0.1:notaport", "'127.0.0.1:notaport': the port must be a number from 1 to 65535"),
        ("a:0", "'a:0': the port must be a number from 1 to 65535"),
        ("a:65536", "'a:65536': the port must be a number from 1 to 65535"),
        ("a:", "'a:': the port must be a number from 1 to 65535"),
        ("a:-1", "'a:-1': the port must be a number from 1 to 65535"),
        ("a:٩٠٩٢", "'a:٩٠٩٢': the port must be a number from 1 to 65535"),
        ("a:1,", "has an empty entry (a stray comma?)"),
        ("a:1,,b:2", "has an empty entry (a stray comma?)"),
        (":9092", "':9092': '' is not a host name or IP address"),
        ("kafka one:9092", "'kafka one:9092': 'kafka one' is not a host name or IP address"),
        ("http://kafka:9092", "'http://kafka:9092': an IPv6 address with a port goes in brackets"),
        ("::1:9092:x", "'::1:9092:x': an IPv6 address with a port goes in brackets"),
        ("[kafka]:9092", "'[kafka]:9092': a bracketed host must be an IPv6 address"),
        ("[::1", "'[::1': a bracketed host must be an IPv6 address"),
        ("[::1]9092", "'[::1]9092': expected host:port"),
    ],
)
def test_bad_lists_are_refused_naming_the_entry(value: str, message: str) -> None:
    """A list aiokafka would fail on, or retry for ever, is a ValueError naming what is wrong."""
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_broker_addresses(value)
    assert str(caught.value).startswith(message)


def test_the_normalised_list_names_every_port() -> None:
    """Blanks around entries go, each entry gets its port, IPv6 hosts go in brackets."""
    assert normalise_broker_list(" kafka-1 , [::1]:9093,::1 ") == (
        "kafka-1:9092,[::1]:9093,[::1]:9092"
    )


HOSTS = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,5}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
ADDRESSES = st.lists(
    st.builds(BrokerAddress, HOSTS, st.integers(min_value=1, max_value=65535)),
    min_size=1,
    max_size=4,
)


@given(ADDRESSES)
def test_a_normalised_list_reads_the_same_here_and_in_aiokafka(
    addresses: list[BrokerAddress],
) -> None:
    """Whatever list is accepted, aiokafka reads the normalised one as the same host:port pairs."""
    listed = normalise_broker_list(",".join(str(address) for address in addresses))
    assert parse_broker_addresses(listed) == tuple(addresses)
    read = [(host, port) for host, port, _ in collect_hosts(listed, randomize=False)]
    assert read == [(address.host, address.port) for address in addresses]

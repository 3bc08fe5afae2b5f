"""Real Apache Kafka for the tests, run from its Maven Central jars with the machine's Java.

- `release`: the pinned Kafka versions, and getting their jars with Maven into a cache
  outside the working tree.
- `node`: one KRaft node (broker and controller in one JVM): its configuration, format, start,
  stop, crash and log.
- `cluster`: one or three nodes sharing a cluster id and a controller quorum, with the listeners
  and extra settings a test asks for.

Imports: the standard library only, so the test session can decide which brokers to run
before anything starts.
"""

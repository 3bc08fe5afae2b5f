"""The Kafka side: fetch, dispatch by user, publish results, commit what is done.

`consumer.py` the consume loop (pause and resume, commit on rebalance), `dispatcher.py` per-user
order with a concurrency cap and coalescing, `offsets.py` the offset tracker, `publisher.py` the
audit and dead-letter producer, `kafka.py` the aiokafka options and broker workarounds,
`guard_ledger.py` the topic where the group keeps what each partition spent of the guard's
window. It may
import `sync` (the loop hands it events), `events`, `errors`, `settings` and `observability`; never
`scim` or the sandbox.
"""

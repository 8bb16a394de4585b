"""History on ClickHouse: the store (chDB in-process or a server), its schema, and the
history sink that turns journal batches into inserts (DESIGN.md §8, §9, §11; the journal
follower feeding it is NATS code: adapters.nats.history)."""

"""NATS adapters (DESIGN.md §9, §10): the embedded nats-server, the JetStream journal and
snapshot store (`adapters.nats.journal`), the entry codec (`adapters.nats.codec`), and the
journal follower (`adapters.nats.follower`) with its sinks' NATS halves: history
(`adapters.nats.history`) and the business-event bus (`adapters.nats.bus`).

Import the submodules directly; this package imports nothing so that importing one
adapter never drags in the others.
"""

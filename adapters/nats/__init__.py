"""NATS adapters (DESIGN.md §9, §10): the embedded nats-server, the JetStream journal and
snapshot store (`adapters.nats.journal`), and the entry codec (`adapters.nats.codec`).

Import the submodules directly; this package imports nothing so that importing one
adapter never drags in the others.
"""

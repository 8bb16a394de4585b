"""In-memory implementations of the ports (engine.domain.ports): tests, `journal=memory` dev engines.

Each is bounded and behaves like its real counterpart (ordering, fencing, idempotency),
so contract suites run the same tests over both."""

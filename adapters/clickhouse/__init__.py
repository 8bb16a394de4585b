"""History on ClickHouse: the store (chDB in-process or a server), its schema, and the
sink that feeds it from the journal (DESIGN.md §8, §9, §11)."""

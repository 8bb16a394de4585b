"""NATS ingestion of IoT cabinet and WMS events (DESIGN.md §10, §12)."""

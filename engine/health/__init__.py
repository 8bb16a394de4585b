"""Stock health (DESIGN.md §14, issue 15): one alert model, expiry rules as data,
reconciliation against WMS/ERP snapshots and shelf counts from recognisers.

Pure like engine/domain: decisions are plain functions over typed values; the parts that
wait (stores, buses, timers) are reached through the ports in engine.health.ports and
wired by engine.bootstrap.health."""

"""Peer baselines the bench compares Lotwise with (bench/systems.py: the `System` they implement)."""

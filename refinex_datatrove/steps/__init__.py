"""Datatrove pipeline steps: thin adapters around the pure core. One step class per module."""

"""Implementations of the VideoProvider port (services/ports.py): Runway, and an in-memory one for tests."""

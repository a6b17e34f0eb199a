"""Collector: turns the guest LAN's packets into devices and visits (see docs/architecture.md)."""

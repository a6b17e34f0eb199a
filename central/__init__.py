"""Central store: the chain's leads, visits and segments on PostgreSQL (see DESIGN.md)."""

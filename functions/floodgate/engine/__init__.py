"""The enforcement engine: the I/O around `core.decision` (leases, the converge loop, preflight, and the
entry changes)."""

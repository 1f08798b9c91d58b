"""The services the handlers and the CLI call: detection, expiry, manual actions, and the reports, events,
JSON shapes and wiring they share. Each one puts the engine, the adapters and the core together."""

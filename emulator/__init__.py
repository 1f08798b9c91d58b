"""The embedded AWS for the demo and the integration tests: moto in server mode, the demo network, and the
deployment of the real synthesized Floodgate stack into it."""

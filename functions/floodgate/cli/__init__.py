"""The `floodgate` command line: analyze captures offline, review and act on live deployments."""

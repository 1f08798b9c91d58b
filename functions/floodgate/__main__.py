from floodgate.cli.main import entry

entry()

from runtime.frontends.cli import entry

entry()

from snapshotter.cli import entry

entry()

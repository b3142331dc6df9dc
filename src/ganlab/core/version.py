"""The package version (one place: the package and its checkpoints read it from here)."""

VERSION = "0.1.0"

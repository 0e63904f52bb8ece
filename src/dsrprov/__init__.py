"""dsrprov: provision real servers and directors for Direct Server Return."""

__version__ = "0.2.0"  # a fallback: the CLI reads the installed package metadata

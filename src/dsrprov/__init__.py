"""dsrprov: provision real servers and directors for Direct Server Return."""

__version__ = "0.1.0"

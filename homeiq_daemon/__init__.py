"""homeiq-daemon: a headless companion daemon for Home Assistant."""

__version__ = "0.1.0"

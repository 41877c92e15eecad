"""Runnable lessons on Linux network and process programming."""

__version__ = "0.1.0"

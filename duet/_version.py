"""The version of duet (both sides of a duet must run the same one)."""

__version__ = "0.1.0"

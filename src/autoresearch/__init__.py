"""autoresearch: autonomous research loops on any code."""

__version__ = "0.1.0"

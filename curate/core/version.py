"""The package version (one place; ``setup.cfg`` and every manifest read it from here)."""

__version__ = "0.1.0"

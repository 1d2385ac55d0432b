"""alchemiscale-local: a single-host alchemiscale-style deployment."""

__version__ = "0.1.0"

__all__ = ["__version__"]

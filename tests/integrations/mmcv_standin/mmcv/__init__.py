"""Stand-in for mmcv (see ../README.md)."""

__version__ = "2.2.0+standin"

"""The composition root: the ``tokencast`` command and the demo sit above edge, link and cloud."""

__version__ = "0.1.0"

"""engramp2p: a leaderless peer-to-peer associative memory fabric for edge devices.

Heavy modules (numpy, pynndescent, the trio node) are imported lazily by the code that needs them, so
``import engramp2p`` stays cheap for the CLI.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

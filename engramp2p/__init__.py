"""engramp2p: a leaderless peer-to-peer associative memory fabric for edge devices.

``engramp2p.Client`` (blocking) and ``engramp2p.AsyncClient`` (trio) talk to a running agent over its
control socket. They are resolved lazily, like every heavy module (numpy, pynndescent, the trio node),
so that ``import engramp2p`` and ``engramp2p --help`` stay cheap.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from engramp2p import api

        return getattr(api, name)
    raise AttributeError(f"module 'engramp2p' has no attribute {name!r}")

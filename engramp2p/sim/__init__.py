"""Deterministic discrete-event simulator for the sans-IO cores (DESIGN §2, §12).

``loop`` (event heap and virtual clock) and ``network`` (fault model) and ``driver`` (runs any
``engramp2p.sansio.Core``) know nothing about SWIM; ``cluster`` (SWIM peers with persisted identity),
``metrics`` and ``scenario`` (what ``engramp2p simulate`` and the simulation tests run) do.
"""

from engramp2p.sim.driver import Driver
from engramp2p.sim.loop import EventLoop
from engramp2p.sim.network import LINK_PROFILES, LinkProfile, Network

__all__ = ["LINK_PROFILES", "Driver", "EventLoop", "LinkProfile", "Network"]

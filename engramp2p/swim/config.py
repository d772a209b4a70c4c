"""Every SWIM/Lifeguard knob, with memberlist's LAN/WAN/local profiles as defaults.

Durations are seconds (floats). The profiles follow hashicorp/memberlist's DefaultLANConfig,
DefaultWANConfig and DefaultLocalConfig; reconnect settings follow Serf (failed members are kept and
retried, so partitions heal by themselves). ``fast_confirm`` is our addition: a member that learns of a
suspicion probes the suspect ahead of its round-robin with probability ``min(1, 2k/n)``, so the k
independent confirmations Lifeguard waits for arrive within about a probe period.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Profile = Literal["lan", "wan", "local"]


class SwimConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    retransmit_mult: int = 4
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    awareness_max_multiplier: int = 8
    push_pull_interval: float = 30.0
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    gossip_to_the_dead_time: float = 30.0
    tcp_timeout: float = 10.0
    reconnect_interval: float = 30.0
    reconnect_timeout: float = 24 * 3600.0
    left_reap_timeout: float = 24 * 3600.0
    seed_retry_min: float = 1.0
    seed_retry_max: float = 30.0
    max_incarnation_jump: int = 1 << 20
    leave_propagate_delay: float = 1.0
    fast_confirm: bool = True

    @classmethod
    def profile(cls, name: Profile) -> SwimConfig:
        """memberlist's named profile; unknown names are a local (programming) error."""
        if name == "lan":
            return cls()
        if name == "wan":
            return cls(
                probe_interval=5.0,
                probe_timeout=3.0,
                suspicion_mult=6,
                push_pull_interval=60.0,
                gossip_interval=0.5,
                gossip_nodes=4,
                gossip_to_the_dead_time=60.0,
                tcp_timeout=30.0,
            )
        if name == "local":
            return cls(
                probe_interval=1.0,
                probe_timeout=0.2,
                indirect_checks=1,
                retransmit_mult=2,
                suspicion_mult=3,
                push_pull_interval=15.0,
                gossip_interval=0.1,
                gossip_to_the_dead_time=15.0,
                tcp_timeout=1.0,
            )
        raise ValueError(f"unknown SWIM profile {name!r}")

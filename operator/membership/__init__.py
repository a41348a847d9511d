"""Gossip membership for the speakers: who of the members Kubernetes names is alive (SWIM with Lifeguard).

Nothing here imports Kubernetes, so the protocol can be simulated and tested
on its own: :mod:`.state` is the pure state machine, :mod:`.messages` the wire
format, :mod:`.crypto` the shared-key encryption, :mod:`.node` the asyncio
runtime over UDP and TCP, and :mod:`.sim` a virtual-clock network of state
machines.
"""

from metallb.operator.membership.messages import Kind, Packet, Status, Update
from metallb.operator.membership.state import MemberView, Params, Send, Stats, Swim, Transport

__all__ = ["Kind", "MemberView", "Packet", "Params", "Send", "Stats", "Status", "Swim", "Transport", "Update"]

"""A virtual-clock network of :class:`~.state.Swim` members: the same state machine, without sockets.

Packets are delivered after a latency, lost at random (UDP), or delayed by
retransmissions (TCP: a lost SYN costs 1 s, a lost data segment 0.2 s, as
Linux's initial timeouts). Members can be killed (they stop; packets to them
vanish) or cut off (they run, but nothing reaches them or leaves them). Bytes
are counted as they would leave a socket: plaintext plus the encryption
overhead. Used by the property tests and ``bench/membership.py``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterable

import attrs
from metallb.operator.membership.messages import Kind, Packet, Status, Update, packet_size
from metallb.operator.membership.state import Params, Send, Swim, Transport

__all__ = ["OVERHEAD", "Network", "Simulation", "Transition"]

#: Bytes the encryption adds per packet (crypto.OVERHEAD; repeated so the simulation needs no cryptography).
OVERHEAD = 29


@attrs.frozen(kw_only=True)
class Network:
    """Latency and loss between every pair of members."""

    latency: float = 0.0002
    jitter: float = 0.0003
    loss: float = 0.0
    syn_timeout: float = 1.0
    rto: float = 0.2


@attrs.frozen(kw_only=True)
class Transition:
    """Member *viewer* saw *member* go from *old* to *new* at *time*."""

    time: float
    viewer: str
    member: str
    old: Status
    new: Status


class Simulation:
    """*n* members named ``m000``... that all know each other (``synced=True``) at time 0."""

    def __init__(
        self,
        n: int,
        *,
        params: Params | None = None,
        network: Network | None = None,
        seed: int = 0,
        synced: bool = True,
    ) -> None:
        self.params = params or Params()
        self.network = network or Network()
        self.now = 0.0
        self.rng = random.Random(seed)
        width = max(3, len(str(n - 1)))
        self.names = [f"m{i:0{width}d}" for i in range(n)]
        self.transitions: list[Transition] = []
        self.dead: set[str] = set()
        self.cut_off: set[str] = set()
        self.bytes_sent = dict.fromkeys(self.names, 0)
        self.packets_sent = dict.fromkeys(self.names, 0)
        self._queue: list[tuple[float, int, str, str, Packet | None, Transport]] = []
        self._counter = itertools.count()
        self._scheduled: dict[str, float] = {}
        self._incarnations = itertools.count(1_000)
        self.nodes: dict[str, Swim] = {}
        for i, name in enumerate(self.names):
            self.nodes[name] = self._new_node(name, seed * 100_003 + i)
        if synced:
            views = {
                name: Update(status=Status.ALIVE, name=name, incarnation=node.incarnation, source=name)
                for name, node in self.nodes.items()
            }
            for name, node in self.nodes.items():
                other = self.names[1] if name == self.names[0] else self.names[0]
                packet = Packet(kind=Kind.SYNC_REPLY, sender=other, incarnation=self.nodes[other].incarnation,
                                updates=tuple(v for m, v in views.items() if m != name))  # fmt: skip
                node.receive(0.0, packet, transport=Transport.TCP)
        for name in self.names:
            self._schedule(name)

    def _new_node(self, name: str, seed: int) -> Swim:
        def observe(member: str, old: Status, new: Status, now: float) -> None:
            self.transitions.append(Transition(time=now, viewer=name, member=member, old=old, new=new))

        node = Swim(name, incarnation=next(self._incarnations), now=self.now, params=self.params,
                    rng=random.Random(seed), observer=observe)  # fmt: skip
        node.set_members(self.names, self.now)
        return node

    # -- control -----------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """Stop member *name* without a word (SIGKILL, power off)."""
        self.dead.add(name)

    def restart(self, name: str) -> None:
        """Start a fresh process for *name* (a new incarnation, nothing remembered) and let it join."""
        self.dead.discard(name)
        self.nodes[name] = self._new_node(name, self.rng.randrange(1 << 30))
        self._dispatch(name, self.nodes[name].join(self.now))
        self._scheduled.pop(name, None)
        self._schedule(name)

    def set_meta(self, name: str, meta: bytes | None) -> None:
        """Member *name* carries *meta* from now on (:meth:`Swim.set_meta`)."""
        self.nodes[name].set_meta(meta, self.now)
        self._schedule(name)

    def cut(self, name: str, *, off: bool = True) -> None:
        """Cut *name*'s link (it runs on, alone) or, with ``off=False``, restore it."""
        if off:
            self.cut_off.add(name)
        else:
            self.cut_off.discard(name)

    def live_members(self) -> list[str]:
        """Members that run."""
        return [n for n in self.names if n not in self.dead]

    # -- the clock ---------------------------------------------------------------------------

    def run_until(self, end: float) -> None:
        """Process every event up to time *end*."""
        queue = self._queue
        while queue and queue[0][0] <= end:
            when, _, kind, name, packet, transport = heapq.heappop(queue)
            self.now = when
            if name in self.dead:
                continue
            node = self.nodes[name]
            if kind == "tick":
                if self._scheduled.get(name) != when:
                    continue
                del self._scheduled[name]
                self._dispatch(name, node.tick(when))
            else:
                assert packet is not None
                self._dispatch(name, node.receive(when, packet, transport=transport))
            self._schedule(name)
        self.now = max(self.now, end)

    def run_for(self, seconds: float) -> None:
        """Advance the clock by *seconds*."""
        self.run_until(self.now + seconds)

    def _schedule(self, name: str) -> None:
        when = max(self.now, self.nodes[name].next_deadline())
        if when < self._scheduled.get(name, math.inf):
            self._scheduled[name] = when
            heapq.heappush(self._queue, (when, next(self._counter), "tick", name, None, Transport.UDP))

    def _dispatch(self, sender: str, sends: Iterable[Send]) -> None:
        net, rng = self.network, self.rng
        for send in sends:
            size = packet_size(send.packet) + OVERHEAD
            self.bytes_sent[sender] += size
            self.packets_sent[sender] += 1
            if sender in self.cut_off or send.to in self.cut_off or send.to not in self.nodes:
                continue
            delay = net.latency + rng.random() * net.jitter
            if send.transport == Transport.UDP:
                if rng.random() < net.loss:
                    continue
            else:
                # A request opens a connection (SYN, SYN-ACK, data); an answer is one data segment.
                reply = send.packet.kind in (Kind.ACK, Kind.SYNC_REPLY)
                for timeout in (net.rto,) if reply else (net.syn_timeout, net.syn_timeout, net.rto):
                    while rng.random() < net.loss:
                        delay += timeout
            heapq.heappush(self._queue, (self.now + delay, next(self._counter), "packet", send.to, send.packet,
                                         send.transport))  # fmt: skip

"""SWIM membership with Lifeguard's refinements, as a pure state machine: no sockets, no clock, no Kubernetes.

Its owner (the asyncio runtime in :mod:`.node`, or the simulation in
:mod:`.sim`) feeds it time and packets and sends what it returns:

- :meth:`Swim.tick` when :meth:`Swim.next_deadline` has passed,
- :meth:`Swim.receive` for every authenticated packet from a member,
- :meth:`Swim.set_members` when Kubernetes changes who may be a member.

Each returns a list of :class:`Send`. Who is a member is decided outside;
the machine decides only who is *alive*.

The protocol (SWIM, Das et al. 2002, with Lifeguard, Dadgar et al. 2018, as
hashicorp/memberlist implements them):

- **Probes.** Every probe interval a member pings the next member of a
  shuffled round-robin list. Without an ack within the probe timeout it asks
  ``indirect_checks`` other members to ping the target for it (``PING_REQ``)
  and pings it over TCP too; without any ack by the end of the interval the
  target becomes *suspect*.
- **Suspicion.** A suspect is still live for the election (a single lost
  probe never moves an address). It becomes *dead* when its suspicion timer
  runs out; the timer starts at ``suspicion_max_mult`` times the minimum and
  falls towards the minimum (``suspicion_mult * log10(n) * probe_interval``)
  as other members independently confirm the suspicion (Lifeguard's
  "dogpile"), so a real death is declared quickly while a lone false
  suspicion leaves time to refute.
- **Refutation.** A member that hears it is suspected or dead bumps its
  incarnation and gossips that it is alive; newer incarnations win. A probe
  of a member we suspect carries the suspicion ("buddy system"), and a
  member we hold dead that talks to us is told so, so it refutes at once.
- **Dissemination.** Updates ride on every packet (pings, acks) and on
  gossip packets to ``gossip_nodes`` random members every gossip interval,
  each retransmitted ``retransmit_mult * ceil(log10(n + 1))`` times, fewest
  transmissions first. A push-pull state exchange over TCP at start and every
  ``sync_interval`` (scaled with the cluster size) repairs what gossip missed;
  a live member heard from first-hand at a new incarnation whose meta has not
  arrived is asked at once by push-pull (gossip alone left one member without
  it in 2 of 300 simulated changes at up to 10 % loss).
- **Local health.** A score from 0 to ``awareness_max - 1`` rises when this
  member's own probes fail without the expected nacks from the helpers, or
  when it must refute, and falls with each successful probe; probe interval,
  probe timeout and suspicion timeouts are multiplied by ``score + 1`` so an
  overloaded member slows down instead of accusing healthy ones.
- **Hold-down.** A member that comes back from the dead counts as live again
  only after ``hold_down`` seconds, so a flapping node cannot pull addresses
  back and forth. The returning member holds *itself* down as long (so it
  does not answer for addresses that moved away meanwhile) when it learns that
  a member it trusts (up, not held down in its view) holds it dead, or a
  restarted process learns its predecessor was. A member heard from at a
  higher incarnation while held dead (a new process, or a meta change while it
  was cut off) is told that it was, since it had nothing to refute. A member cut off from most
  others (at least two, and most, of them down in its view) is the one
  returning: the members that come back while it is still cut off, and all
  of them once it holds itself down, count at once; it holds itself down when
  any of them holds it dead. Once it is no longer cut off and does not hold
  itself down, a member coming back is held down as usual: a member that lost
  most others only for a moment (a false suspicion under load, refuted) is
  not "the one returning" for a node that really was gone. In a symmetric
  split of two members neither steps back.
- **Meta.** Each member may carry a small opaque meta (at most
  :data:`~.messages.MAX_META` bytes; the speakers put their MACs in it), as
  memberlist's node meta. It belongs to an incarnation: :meth:`Swim.set_meta`
  bumps this member's incarnation and gossips an alive update carrying it;
  every alive update this member sends about itself (refutations, push-pull)
  carries it too. A member's meta is replaced only by one at a higher
  incarnation, so old gossip never brings back an old meta; a member relaying
  another's alive update attaches the meta only if it knows it for that very
  incarnation. Meta is kept for members that are down (a returning member's
  frames are still ours) and forgotten with the member when Kubernetes drops
  it, so a member stores at most members x MAX_META bytes of meta.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable

import attrs
from metallb.operator.membership.messages import MAX_META, Kind, Packet, Status, Update, header_size, update_size

__all__ = ["MemberView", "Observer", "Params", "Send", "Stats", "Swim", "Transport"]

_DOWN = (Status.DEAD, Status.LEFT)
_UP = (Status.ALIVE, Status.SUSPECT)

#: Called on every status change a member sees: (member, old, new, now).
Observer = Callable[[str, Status, Status, float], None]


class Transport(enum.Enum):
    """How a packet travels."""

    UDP = "udp"
    TCP = "tcp"


@attrs.frozen(kw_only=True)
class Send:
    """Send *packet* to member *to*."""

    to: str
    packet: Packet
    transport: Transport = Transport.UDP


@attrs.frozen(kw_only=True)
class Params:
    """Protocol parameters (seconds unless noted); the defaults aim at sub-second failover on a LAN."""

    probe_interval: float = 0.1
    probe_timeout: float = 0.04
    indirect_checks: int = 3
    tcp_fallback: bool = True
    #: Minimum suspicion timeout = suspicion_mult * max(1, log10(n)) * probe_interval, at least suspicion_min.
    suspicion_mult: float = 2.0
    suspicion_min: float = 0.5
    #: The timeout without confirmations, as a multiple of the minimum.
    suspicion_max_mult: float = 3.0
    #: Independent confirmations that bring the timeout down to the minimum.
    suspicion_confirmations: int = 3
    gossip_interval: float = 0.05
    gossip_nodes: int = 3
    retransmit_mult: int = 4
    awareness_max: int = 8
    #: Push-pull period for up to 32 members; longer for larger clusters (memberlist's pushPullScale).
    sync_interval: float = 30.0
    #: Each member pings one random dead member this often, so partitions heal.
    dead_probe_interval: float = 1.0
    hold_down: float = 5.0
    #: Plaintext bytes per UDP packet (1400 on the wire less the encryption overhead).
    max_payload: int = 1371

    def __attrs_post_init__(self) -> None:
        if not 0 < self.probe_timeout < self.probe_interval:
            raise ValueError(
                f"probe_timeout {self.probe_timeout}: must be above 0 and below probe_interval {self.probe_interval}"
            )
        for field in ("gossip_interval", "suspicion_mult", "sync_interval", "dead_probe_interval"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} {getattr(self, field)}: must be above 0")
        if self.suspicion_max_mult < 1 or self.awareness_max < 1 or self.retransmit_mult < 1:
            raise ValueError("suspicion_max_mult, awareness_max and retransmit_mult must be at least 1")

    def suspicion_bounds(self, n: int) -> tuple[float, float, int]:
        """(minimum, maximum, expected confirmations) of a suspicion timeout among *n* members."""
        low = max(self.suspicion_min, self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.probe_interval)
        k = self.suspicion_confirmations if n - 2 >= self.suspicion_confirmations else 0
        return low, low * self.suspicion_max_mult, k

    def retransmit_limit(self, n: int) -> int:
        """How many times each member sends one update among *n* members."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def sync_period(self, n: int) -> float:
        """Seconds between push-pulls among *n* members."""
        if n <= 32:
            return self.sync_interval
        return self.sync_interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)


@attrs.define(kw_only=True)
class Stats:
    """Counters of one member's protocol activity (read by metrics and benchmarks)."""

    probes: int = 0
    probe_failures: int = 0
    indirect_probes: int = 0
    tcp_probes: int = 0
    #: Suspicions this member raised (its own failed probes).
    suspicions: int = 0
    refutations: int = 0
    #: Deaths this member declared (its suspicion timers ran out).
    deaths: int = 0
    #: Packets ignored: from a non-member, or a ping for someone else.
    ignored: int = 0


@attrs.frozen(kw_only=True)
class MemberView:
    """One member as this member sees it."""

    name: str
    status: Status
    incarnation: int
    confirmed: bool
    held_until: float
    meta: bytes | None = None


@attrs.define(kw_only=True)
class _Suspicion:
    start: float
    low: float
    high: float
    k: int
    confirmers: set[str]

    def timeout(self) -> float:
        """Lifeguard: from ``high`` down to ``low`` as confirmations reach ``k`` (logarithmically)."""
        if self.k < 1:
            return self.low
        seen = len(self.confirmers) - 1
        fraction = math.log(seen + 1) / math.log(self.k + 1)
        return max(self.low, self.high - (self.high - self.low) * fraction)

    def deadline(self) -> float:
        return self.start + self.timeout()

    def confirm(self, source: str) -> bool:
        """Count an independent suspicion; True if it was new."""
        if len(self.confirmers) - 1 >= self.k or source in self.confirmers:
            return False
        self.confirmers.add(source)
        return True


@attrs.define(kw_only=True)
class _Member:
    name: str
    incarnation: int = 0
    status: Status = Status.ALIVE
    #: An incarnation was heard (first-hand or by gossip); until then it does not count as live.
    confirmed: bool = False
    since: float = 0.0
    #: Its meta, as of incarnation ``meta_inc`` (None: not heard yet).
    meta: bytes | None = None
    meta_inc: int = -1
    held_until: float = 0.0
    suspicion: _Suspicion | None = None


@attrs.define(kw_only=True)
class _Probe:
    target: str
    seq: int
    timeout_at: float
    end: float
    indirect: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@attrs.define(kw_only=True)
class _Relay:
    requester: str
    seq: int
    nack_at: float


@attrs.define(kw_only=True)
class _Pending:
    update: Update
    size: int
    sends: int
    order: int


class _Broadcasts:
    """Updates waiting to be piggybacked, one per member (newer news replaces older), fewest sends first."""

    def __init__(self) -> None:
        self._items: dict[str, _Pending] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, update: Update) -> None:
        self._items[update.name] = _Pending(update=update, size=update_size(update), sends=0, order=-next(self._order))

    def discard(self, name: str) -> None:
        self._items.pop(name, None)

    def take(self, budget: int, limit: int) -> list[Update]:
        """Updates fitting in *budget* bytes, each counted as sent once more; dropped after *limit* sends."""
        if not self._items:
            return []
        chosen: list[Update] = []
        for name, item in sorted(self._items.items(), key=lambda kv: (kv[1].sends, kv[1].order)):
            if item.size > budget:
                continue
            budget -= item.size
            chosen.append(item.update)
            item.sends += 1
            if item.sends >= limit:
                del self._items[name]
        return chosen


class Swim:
    """One member's view of the group; see the module docstring.

    Args:
        name: this member (the Kubernetes node name).
        incarnation: where this process starts counting; must exceed any
            incarnation an earlier process of the same member used (the
            runtime uses the wall clock in milliseconds).
        now: the owner's clock (monotonic seconds) at creation.
        params: protocol parameters.
        rng: randomness (seeded by simulations and tests).
        observer: called on every status change.
        meta: this member's meta to start with (see :meth:`set_meta`).
    """

    def __init__(
        self,
        name: str,
        *,
        incarnation: int,
        now: float,
        params: Params | None = None,
        rng: random.Random | None = None,
        observer: Observer | None = None,
        meta: bytes | None = None,
    ) -> None:
        _check_meta(meta)
        self.name = name
        self.params = params or Params()
        self.stats = Stats()
        #: Bumped on every change of the live set's inputs (status, confirmation, membership).
        self.changes = 0
        #: A push-pull answer was merged (the view is complete enough to act on).
        self.synced = False
        self.leaving = False
        self._inc = incarnation
        self._meta = meta
        self._rng = rng or random.Random()
        self._observer = observer
        self._members: dict[str, _Member] = {}
        self._names: list[str] = []
        self._down = 0
        self._isolated = False
        self._held_until = -math.inf  # this member, after returning from being cut off
        self._awareness = 0
        self._seq = self._rng.randrange(1 << 32)
        self._probe: _Probe | None = None
        self._order: list[str] = []
        self._order_pos = 0
        self._relays: dict[int, _Relay] = {}
        self._broadcasts = _Broadcasts()
        self._timers: list[tuple[float, str]] = []  # suspicion deadlines and hold-down ends (lazily validated)
        self._noticed: dict[str, float] = {}
        self._next_probe = now
        self._next_dead_probe = now + self.params.dead_probe_interval
        self._next_gossip = now
        self._next_sync = now + self.params.sync_interval
        self._header = header_size(name)
        self._limit = self.params.retransmit_limit(1)

    # -- views -------------------------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        """This member's current incarnation."""
        return self._inc

    @property
    def health(self) -> int:
        """Lifeguard's local health score: 0 is healthy; timeouts are multiplied by ``health + 1``."""
        return self._awareness

    @property
    def pending_broadcasts(self) -> int:
        """Updates still to be piggybacked."""
        return len(self._broadcasts)

    def members(self) -> dict[str, MemberView]:
        """Every other member as seen now."""
        return {
            n: MemberView(name=n, status=m.status, incarnation=m.incarnation, confirmed=m.confirmed,
                          held_until=m.held_until, meta=m.meta)
            for n, m in self._members.items()
        }  # fmt: skip

    @property
    def meta(self) -> bytes | None:
        """This member's meta."""
        return self._meta

    def metas(self) -> dict[str, bytes]:
        """Every other member's meta, where known (members up or down, as long as Kubernetes names them)."""
        return {n: m.meta for n, m in self._members.items() if m.meta is not None}

    def status_of(self, name: str) -> Status | None:
        """The status of member *name* (None for a non-member; ALIVE for this member)."""
        if name == self.name:
            return Status.ALIVE
        member = self._members.get(name)
        return None if member is None else member.status

    def live(self, now: float) -> frozenset[str]:
        """Members to count as live: every confirmed alive or suspect member not held down, and this one unless held."""
        return frozenset(
            ([self.name] if self._held_until <= now else [])
            + [n for n, m in self._members.items() if m.status in _UP and m.confirmed and m.held_until <= now]
        )

    def next_deadline(self) -> float:
        """When :meth:`tick` must run next (it may run earlier)."""
        probe = self._probe
        times = [self._next_sync]
        if probe is None:
            times.append(self._next_probe)
        else:
            times.append(probe.end if probe.indirect else probe.timeout_at)
        if self._down:
            times.append(self._next_dead_probe)
        if self._broadcasts:
            times.append(self._next_gossip)
        if self._relays:
            times.append(min(r.nack_at for r in self._relays.values()))
        if self._timers:
            times.append(self._timers[0][0])
        return min(times)

    # -- inputs ------------------------------------------------------------------------------

    def set_members(self, names: Iterable[str], now: float) -> None:
        """Who may be a member (from Kubernetes); newcomers start unconfirmed, the rest are forgotten."""
        wanted = set(names) - {self.name}
        for gone in set(self._members) - wanted:
            member = self._members.pop(gone)
            if member.status in _DOWN:
                self._down -= 1
            self._broadcasts.discard(gone)
            self._noticed.pop(gone, None)
            if self._probe is not None and self._probe.target == gone:
                self._probe = None
        for new in sorted(wanted - set(self._members)):
            self._members[new] = _Member(name=new, since=now)
            # memberlist's rule: a newcomer joins the probe list at a random place, not at the end.
            self._order.insert(self._rng.randint(self._order_pos, len(self._order)), new)
        self._names = list(self._members)
        self._limit = self.params.retransmit_limit(len(self._members) + 1)
        self._update_isolation(now)
        self.changes += 1

    def set_meta(self, meta: bytes | None, now: float) -> None:
        """Carry *meta* from now on: a new incarnation, gossiped at once (nothing happens if it is unchanged)."""
        _check_meta(meta)
        if meta == self._meta:
            return
        self._meta = meta
        self._inc += 1
        self._broadcasts.add(self._myself())
        self._next_gossip = min(self._next_gossip, now)

    def _myself(self) -> Update:
        """The alive update about this member, with its meta."""
        return Update(status=Status.ALIVE, name=self.name, incarnation=self._inc, source=self.name, meta=self._meta)

    def tick(self, now: float) -> list[Send]:
        """Run every timer that is due."""
        out: list[Send] = []
        for seq, relay in list(self._relays.items()):
            if relay.nack_at <= now:
                del self._relays[seq]
                out.append(self._send(relay.requester, Kind.NACK, seq=relay.seq))
        self._run_probe(now, out)
        while self._timers and self._timers[0][0] <= now:
            _, name = heapq.heappop(self._timers)
            member = self._members.get(name)
            if member is not None and member.suspicion is not None and member.suspicion.deadline() <= now:
                self.stats.deaths += 1
                self._dead(now, member, member.incarnation, self.name)
            # A hold-down end needs nothing: live() reads held_until; the tick only wakes the owner.
        if self._down and now >= self._next_dead_probe:
            self._next_dead_probe = now + self.params.dead_probe_interval
            dead = [n for n, m in self._members.items() if m.status == Status.DEAD]
            if dead:
                target = self._rng.choice(dead)
                out.append(self._send(target, Kind.PING, seq=self._next_seq(), target=target,
                                      first=self._notice(target)))  # fmt: skip
        if now >= self._next_gossip:
            self._next_gossip = now + self.params.gossip_interval
            if self._broadcasts:
                for peer in self._random_members(self.params.gossip_nodes, confirmed=False):
                    send = self._send(peer, Kind.GOSSIP)
                    if not send.packet.updates:
                        break
                    out.append(send)
        if now >= self._next_sync:
            self._next_sync = now + self.params.sync_period(len(self._members) + 1)
            for peer in self._random_members(1, confirmed=True):
                out.append(self._sync_packet(peer, Kind.SYNC))
        return out

    def join(self, now: float, *, fanout: int = 3) -> list[Send]:
        """Push-pull with up to *fanout* random members: a starting member learns the group's state."""
        return [self._sync_packet(peer, Kind.SYNC) for peer in self._random_members(fanout, confirmed=False)]

    def leave(self, now: float) -> list[Send]:
        """Say goodbye to every member that may hear it, so they take over at once; nothing is refuted after."""
        self.leaving = True
        goodbye = Update(status=Status.LEFT, name=self.name, incarnation=self._inc, source=self.name)
        return [
            Send(to=n, packet=Packet(kind=Kind.GOSSIP, sender=self.name, incarnation=self._inc, updates=(goodbye,)))
            for n, m in self._members.items()
            if m.status in _UP
        ]

    def receive(self, now: float, packet: Packet, *, transport: Transport = Transport.UDP) -> list[Send]:
        """Handle one packet, already authenticated as coming from ``packet.sender``."""
        out: list[Send] = []
        member = self._members.get(packet.sender)
        if member is None:
            self.stats.ignored += 1
            return out
        if packet.kind == Kind.SYNC:
            # Our view as it was before theirs: a returning member learns how we held it.
            out.append(self._sync_packet(member.name, Kind.SYNC_REPLY))
        self._heard_from(now, member, packet, out)
        if member.status in _DOWN:
            # Held dead and not refuted yet: it is the one returning, its view is stale (a member cut off holds
            # everyone else dead, and spread at once that would cut us off too). Only news about us counts.
            packet = attrs.evolve(packet, updates=tuple(u for u in packet.updates if u.name == self.name))
        if packet.kind in (Kind.SYNC, Kind.SYNC_REPLY):
            self._merge(now, packet)
        else:
            for update in packet.updates:
                self._apply(now, update)
        kind = packet.kind
        if kind == Kind.PING:
            if packet.target != self.name:
                self.stats.ignored += 1
            else:
                notice = self._notice(member.name) if member.status != Status.ALIVE else None
                out.append(self._send(member.name, Kind.ACK, seq=packet.seq, first=notice, transport=transport))
        elif kind == Kind.ACK:
            probe = self._probe
            if probe is not None and probe.seq == packet.seq:
                self._probe = None
                self._health(-1)
            elif (relay := self._relays.pop(packet.seq, None)) is not None:
                out.append(self._send(relay.requester, Kind.ACK, seq=relay.seq))
        elif kind == Kind.NACK:
            if self._probe is not None and self._probe.seq == packet.seq:
                self._probe.nacks += 1
        elif kind == Kind.PING_REQ:
            target = self._members.get(packet.target)
            if target is not None and target.name != member.name:
                seq = self._next_seq()
                timeout = self.params.probe_timeout * (self._awareness + 1)
                self._relays[seq] = _Relay(requester=member.name, seq=packet.seq, nack_at=now + timeout)
                out.append(self._send(target.name, Kind.PING, seq=seq, target=target.name))
        elif kind in (Kind.SYNC, Kind.SYNC_REPLY):
            self.synced = True  # either way a whole view was merged
        return out

    # -- probing -----------------------------------------------------------------------------

    def _run_probe(self, now: float, out: list[Send]) -> None:
        probe = self._probe
        if probe is not None:
            if not probe.indirect and now >= probe.timeout_at:
                self._indirect(probe, out)
            if now >= probe.end:
                self._probe = None
                self._failed(now, probe)
        if self._probe is None and now >= self._next_probe:
            scale = self._awareness + 1
            self._next_probe = now + self.params.probe_interval * scale
            target = self._next_target()
            if target is None:
                return
            seq = self._next_seq()
            self._probe = _Probe(
                target=target,
                seq=seq,
                timeout_at=now + self.params.probe_timeout * scale,
                end=now + self.params.probe_interval * scale,
            )
            self.stats.probes += 1
            out.append(self._send(target, Kind.PING, seq=seq, target=target, first=self._notice(target)))

    def _indirect(self, probe: _Probe, out: list[Send]) -> None:
        probe.indirect = True
        helpers = self._random_members(self.params.indirect_checks, confirmed=True, alive=True, exclude=probe.target)
        for helper in helpers:
            out.append(self._send(helper, Kind.PING_REQ, seq=probe.seq, target=probe.target))
        probe.expected_nacks = len(helpers)
        self.stats.indirect_probes += len(helpers)
        if self.params.tcp_fallback:
            self.stats.tcp_probes += 1
            out.append(
                Send(
                    to=probe.target,
                    packet=Packet(kind=Kind.PING, sender=self.name, incarnation=self._inc, seq=probe.seq,
                                  target=probe.target),
                    transport=Transport.TCP,
                )
            )  # fmt: skip

    def _failed(self, now: float, probe: _Probe) -> None:
        self.stats.probe_failures += 1
        member = self._members.get(probe.target)
        if member is not None and member.status in _UP:
            if member.status == Status.ALIVE:
                self.stats.suspicions += 1
            self._suspect(now, member, member.incarnation, self.name)
        # Lifeguard: helpers that did not even nack point at our own network or CPU, not at the target.
        self._health(probe.expected_nacks - probe.nacks if probe.expected_nacks else 1)

    def _next_target(self) -> str | None:
        for _ in range(2):
            while self._order_pos < len(self._order):
                name = self._order[self._order_pos]
                self._order_pos += 1
                member = self._members.get(name)
                if member is not None and member.status in _UP:
                    return name
            self._order = [n for n, m in self._members.items() if m.status in _UP]
            self._rng.shuffle(self._order)
            self._order_pos = 0
        return None

    def _random_members(self, k: int, *, confirmed: bool, alive: bool = False, exclude: str = "") -> list[str]:
        """Up to *k* distinct random members that are up (alive only, confirmed, if asked), *exclude* aside."""
        names = self._names
        if not names or k <= 0:
            return []
        statuses = (Status.ALIVE,) if alive else _UP

        def eligible(name: str) -> bool:
            member = self._members[name]
            return name != exclude and member.status in statuses and (member.confirmed or not confirmed)

        picked: list[str] = []
        for _ in range(4 * k + 4):  # rejection sampling: cheap when most members are up
            name = names[self._rng.randrange(len(names))]
            if name not in picked and eligible(name):
                picked.append(name)
                if len(picked) == k:
                    return picked
        if len(names) <= 8 * k + 8:  # small groups: make sure nobody eligible was missed
            rest = [n for n in names if n not in picked and eligible(n)]
            picked += self._rng.sample(rest, min(k - len(picked), len(rest)))
        return picked

    # -- updates -----------------------------------------------------------------------------

    def _heard_from(self, now: float, member: _Member, packet: Packet, out: list[Send]) -> None:
        """A packet from *member* is first-hand news that it runs at ``packet.incarnation``."""
        if packet.incarnation > member.incarnation or not member.confirmed:
            held = member.status == Status.DEAD and member.confirmed
            bumped = member.confirmed and member.status == Status.ALIVE
            notice = Update(status=Status.DEAD, name=member.name, incarnation=member.incarnation, source=self.name)
            self._alive(now, member, packet.incarnation, rebroadcast=member.status != Status.ALIVE)
            if held:
                # Back at a new incarnation it did not need to refute us (a new process, or a meta change while
                # cut off): tell it we held it dead, so it holds itself down as long as we hold it down.
                out.append(self._send(member.name, Kind.GOSSIP, first=notice))
            elif bumped and member.meta_inc < member.incarnation and not self._carries_meta(packet, member):
                # A live member's new incarnation (a meta change) heard first-hand, ahead of the gossip that
                # carries its meta, which may never reach us: ask it, once per incarnation.
                out.append(self._sync_packet(member.name, Kind.SYNC))
        elif (
            member.status != Status.ALIVE
            and packet.kind != Kind.PING  # the ack to a ping carries our view anyway
            and now - self._noticed.get(member.name, -math.inf) >= self.params.probe_interval
        ):
            # It does not know what we think of it: tell it, once in a while, so it can refute.
            self._noticed[member.name] = now
            out.append(self._send(member.name, Kind.GOSSIP, first=self._notice(member.name)))

    @staticmethod
    def _carries_meta(packet: Packet, member: _Member) -> bool:
        """Whether *packet* holds *member*'s alive update with its meta at ``packet.incarnation``."""
        return any(
            u.name == member.name and u.status == Status.ALIVE and u.incarnation == packet.incarnation and u.meta
            for u in packet.updates
        )

    def _apply(self, now: float, update: Update) -> None:
        """Gossip: apply one piggybacked update."""
        if update.name == self.name:
            self._about_me(now, update, holder=update.source if update.status == Status.DEAD else None)
            return
        member = self._members.get(update.name)
        if member is None:  # not a member as far as Kubernetes tells us: gossip cannot add one
            return
        fresh_meta = self._take_meta(member, update)
        if update.status == Status.ALIVE:
            if update.incarnation > member.incarnation or not member.confirmed:
                self._alive(now, member, update.incarnation, rebroadcast=True)
            elif fresh_meta and update.incarnation == member.incarnation and member.status == Status.ALIVE:
                # Its incarnation came first-hand, its meta only now: pass the meta on as well.
                self._broadcasts.add(attrs.evolve(update, source=member.name))
        elif update.status == Status.SUSPECT:
            self._suspect(now, member, update.incarnation, update.source)
        else:
            self._dead(now, member, update.incarnation, update.name if update.status == Status.LEFT else update.source)

    def _merge(self, now: float, packet: Packet) -> None:
        """Push-pull: merge a whole view; another member's "dead" is only a suspicion here (memberlist's rule)."""
        for update in packet.updates:
            member = self._members.get(update.name)
            if update.name == self.name:
                self._about_me(now, update, holder=packet.sender)
                continue
            if member is None:
                continue
            self._take_meta(member, update)
            if update.status == Status.ALIVE:
                if update.incarnation > member.incarnation or not member.confirmed:
                    self._alive(now, member, update.incarnation, rebroadcast=member.status != Status.ALIVE)
            elif update.status == Status.LEFT:
                self._dead(now, member, update.incarnation, member.name)
            elif update.status == Status.DEAD and not member.confirmed:
                self._dead(now, member, update.incarnation, update.source or packet.sender)
            else:
                self._suspect(now, member, update.incarnation, packet.sender)

    def _about_me(self, now: float, update: Update, *, holder: str | None) -> None:
        """News about this member; *holder* is who holds that view (None when unknown)."""
        if self.leaving:
            return
        down = update.status in _DOWN
        if update.incarnation > self._inc or (update.status != Status.ALIVE and update.incarnation == self._inc):
            self._inc = max(self._inc, update.incarnation) + 1
            self.stats.refutations += 1
            self._health(1)
            self._broadcasts.add(self._myself())
        elif not (down and holder is not None):  # old news, unless a member holds our previous process dead
            return
        if not down or self.params.hold_down <= 0 or now < self._held_until:
            return
        # Cut off now: nobody is left to trust, a member holding us dead is proof enough.
        if self._isolated or (holder is not None and self._trusts(holder, now)):
            # The others hold us down as a returning member: step back as long, so only one side answers.
            self._held_until = now + self.params.hold_down
            heapq.heappush(self._timers, (self._held_until, self.name))
            self.changes += 1

    def _trusts(self, name: str, now: float) -> bool:
        """A member that is up in our view and not itself returning (a symmetric split trusts nobody)."""
        member = self._members.get(name)
        return member is not None and member.status in _UP and member.confirmed and member.held_until <= now

    def _alive(self, now: float, member: _Member, incarnation: int, *, rebroadcast: bool) -> None:
        member.incarnation = max(member.incarnation, incarnation)
        if not member.confirmed:
            member.confirmed = True
            self.changes += 1
        self._set_status(now, member, Status.ALIVE)
        if rebroadcast:
            self._broadcasts.add(
                Update(status=Status.ALIVE, name=member.name, incarnation=member.incarnation, source=member.name,
                       meta=_meta_at(member, member.incarnation))
            )  # fmt: skip

    @staticmethod
    def _take_meta(member: _Member, update: Update) -> bool:
        """Keep the meta an update carries if it is newer (by incarnation) than the one known; True if kept."""
        if update.meta is None or update.incarnation <= member.meta_inc:
            return False
        member.meta = update.meta
        member.meta_inc = update.incarnation
        return True

    def _suspect(self, now: float, member: _Member, incarnation: int, source: str) -> None:
        if incarnation < member.incarnation:
            return
        if member.suspicion is not None:
            # Another independent suspicion: the timer shortens, and others should count it too.
            if member.suspicion.confirm(source):
                heapq.heappush(self._timers, (member.suspicion.deadline(), member.name))
                self._broadcasts.add(
                    Update(status=Status.SUSPECT, name=member.name, incarnation=member.incarnation, source=source)
                )
            return
        if member.status != Status.ALIVE:
            return
        low, high, k = self.params.suspicion_bounds(len(self._members) + 1)
        scale = self._awareness + 1
        member.incarnation = incarnation  # confirmed stays as it was: a suspicion is no sign of life
        member.suspicion = _Suspicion(start=now, low=low * scale, high=high * scale, k=k, confirmers={source})
        self._set_status(now, member, Status.SUSPECT)
        heapq.heappush(self._timers, (member.suspicion.deadline(), member.name))
        self._broadcasts.add(Update(status=Status.SUSPECT, name=member.name, incarnation=incarnation, source=source))

    def _dead(self, now: float, member: _Member, incarnation: int, source: str) -> None:
        if incarnation < member.incarnation or member.status in _DOWN:
            return
        left = source == member.name
        member.incarnation = incarnation
        member.confirmed = True
        self._set_status(now, member, Status.LEFT if left else Status.DEAD)
        self._broadcasts.add(
            Update(
                status=Status.LEFT if left else Status.DEAD, name=member.name, incarnation=incarnation, source=source
            )
        )
        if self._probe is not None and self._probe.target == member.name:
            self._probe = None  # no verdict on our own health from a member already gone

    def _set_status(self, now: float, member: _Member, status: Status) -> None:
        old = member.status
        if old == status:
            return
        if old in _DOWN and status in _UP:
            self._update_isolation(now)  # still counting it down: are we the ones cut off?
            # Cut off now, or holding ourselves down as the returning one: the others are back, not returning.
            # Not "cut off lately": a member we lost only for a moment (a refuted false death) ends an isolation
            # too, and a node really gone that came back within the hold-down would count at once.
            cut_off = self._isolated or now < self._held_until
            if not cut_off and self.params.hold_down > 0:
                member.held_until = now + self.params.hold_down
                heapq.heappush(self._timers, (member.held_until, member.name))
            self._down -= 1
        elif status in _DOWN and old in _UP:
            self._down += 1
        member.status = status
        member.since = now
        if status != Status.SUSPECT:
            member.suspicion = None
        self._update_isolation(now)
        self.changes += 1
        if self._observer is not None:
            self._observer(member.name, old, status, now)

    def _update_isolation(self, now: float) -> None:
        """Cut off: at least two, and most, of the other members are down in our view."""
        self._isolated = self._down >= 2 and 2 * self._down > len(self._members)

    def _health(self, delta: int) -> None:
        self._awareness = min(max(self._awareness + delta, 0), self.params.awareness_max - 1)

    # -- packets -----------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _notice(self, name: str) -> Update | None:
        """What we think of a member that is not plainly alive, to tell it (so it can refute)."""
        member = self._members.get(name)
        if member is None or member.status == Status.ALIVE:
            return None
        source = name if member.status == Status.LEFT else self.name
        return Update(status=member.status, name=name, incarnation=member.incarnation, source=source)

    def _send(
        self,
        to: str,
        kind: Kind,
        *,
        seq: int = 0,
        target: str = "",
        first: Update | None = None,
        transport: Transport = Transport.UDP,
    ) -> Send:
        """A packet for *to* with as many pending updates as fit (*first* ahead of them)."""
        budget = self.params.max_payload - self._header - len(target.encode())
        updates: list[Update] = []
        if first is not None:
            updates.append(first)
            budget -= update_size(first)
        if self._broadcasts:
            updates += [u for u in self._broadcasts.take(budget, self._limit) if first is None or u != first]
        packet = Packet(kind=kind, sender=self.name, incarnation=self._inc, seq=seq, target=target,
                        updates=tuple(updates))  # fmt: skip
        return Send(to=to, packet=packet, transport=transport)

    def _sync_packet(self, to: str, kind: Kind) -> Send:
        view = [self._myself()]
        for name, m in self._members.items():
            if m.confirmed:
                view.append(
                    Update(
                        status=m.status,
                        name=name,
                        incarnation=m.incarnation,
                        source=name if m.status == Status.LEFT else self.name,
                        meta=_meta_at(m, m.incarnation),
                    )
                )
        packet = Packet(kind=kind, sender=self.name, incarnation=self._inc, updates=tuple(view))
        return Send(to=to, packet=packet, transport=Transport.TCP)


def _check_meta(meta: bytes | None) -> None:
    if meta is not None and len(meta) > MAX_META:
        raise ValueError(f"member meta {meta[:16]!r}...: {len(meta)} bytes, at most {MAX_META}")


def _meta_at(member: _Member, incarnation: int) -> bytes | None:
    """*member*'s meta if it is known for exactly *incarnation* (else None: relaying an older one would mislabel it)."""
    return member.meta if member.meta_inc == incarnation else None

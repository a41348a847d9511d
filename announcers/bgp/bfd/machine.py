"""The state machine of one BFD session (RFC 5880 asynchronous mode), pure: time is an argument.

:class:`SessionMachine` holds the state variables of RFC 5880 6.8.1 and applies
the reception rules of 6.8.6, the detection time of 6.8.4, the timer rules of
6.8.3 (slow transmission while not Up, Poll Sequences for timer changes) and
the transmission rules of 6.8.7 (jitter, passive role). It performs no I/O and
reads no clock: the transport feeds it packets and the current time, asks
:meth:`SessionMachine.deadline` when to call :meth:`SessionMachine.tick`
again, and sends what :meth:`SessionMachine.tick` and
:meth:`SessionMachine.transmit` return. Intervals are microseconds, times are
seconds (``time.monotonic``), like the wire and the event loop.

Not implemented: demand mode (we never set D and treat the peer's D as
informational), the echo function (we advertise a Required Min Echo RX of 0,
which tells the peer not to send echo packets).
"""

from __future__ import annotations

import math
import random

import attrs
from metallb.announcers.bgp.bfd.auth import Authenticator
from metallb.announcers.bgp.bfd.packet import ControlPacket, Diag, State

__all__ = ["SLOW_TX", "Received", "SessionMachine", "Transition"]

#: bfd.DesiredMinTxInterval while the session is not Up: "not less than one second" (6.8.3).
SLOW_TX = 1_000_000
_US = 1e-6


@attrs.frozen(kw_only=True)
class Transition:
    """A change of bfd.SessionState.

    Attributes:
        old: the state before.
        new: the state after.
        diag: bfd.LocalDiag after the change (why it happened).
        remote_admin_down: the peer signalled AdminDown; RFC 5882 3.2 says
            clients must not treat this as a path failure.
    """

    old: State
    new: State
    diag: int
    remote_admin_down: bool = False

    @property
    def failed(self) -> bool:
        """The session went from Up to Down for a reason its clients act on."""
        return self.old == State.UP and self.new == State.DOWN and not self.remote_admin_down


@attrs.frozen(kw_only=True)
class Received:
    """What one received packet did.

    Attributes:
        discarded: why the packet was discarded (RFC 5880 6.8.6), or "".
        transition: the state change it caused, if any.
        reply_final: the packet carried Poll: send a Final now (:meth:`SessionMachine.transmit`).
    """

    discarded: str = ""
    transition: Transition | None = None
    reply_final: bool = False


class SessionMachine:
    """One session's RFC 5880 state, in asynchronous mode.

    Args:
        local_discr: bfd.LocalDiscr, non-zero and unique on this system.
        desired_min_tx: the configured transmit interval (µs), used while Up.
        required_min_rx: bfd.RequiredMinRxInterval (µs).
        detect_mult: bfd.DetectMult.
        passive: take the passive role (6.1): send nothing until the peer has spoken.
        now: the current time (seconds).
        rng: the jitter's random source.
        auth: signs and checks packets; None for no authentication.
    """

    def __init__(
        self,
        *,
        local_discr: int,
        desired_min_tx: int,
        required_min_rx: int,
        detect_mult: int,
        passive: bool = False,
        now: float = 0.0,
        rng: random.Random | None = None,
        auth: Authenticator | None = None,
    ) -> None:
        if not 0 < local_discr < 1 << 32:
            raise ValueError(f"local discriminator {local_discr} is not a non-zero 32-bit number")
        if not 0 < detect_mult < 256:
            raise ValueError(f"detect multiplier {detect_mult} is not 1-255")
        self.local_discr = local_discr
        self.detect_mult = detect_mult
        self.passive = passive
        self.auth = auth
        self._rng = rng or random.Random()
        self.state = State.DOWN
        self.local_diag: int = Diag.NONE
        self.remote_state = State.DOWN
        self.remote_discr = 0
        self.remote_diag: int = Diag.NONE
        self.remote_min_rx = 1  # 6.8.1: initialised to 1 µs
        self.remote_desired_min_tx = 0
        self.remote_detect_mult = 0
        self.remote_demand = False
        self.remote_min_echo_rx = 0
        self._configured_tx = desired_min_tx
        self.required_min_rx = required_min_rx
        self.desired_min_tx = max(desired_min_tx, SLOW_TX)
        # Values in force until a Poll Sequence ends (6.8.3): the tx interval we send at, the rx for detection.
        self._tx_in_use = self.desired_min_tx
        self._rx_in_use = required_min_rx
        self.poll_active = False
        self._last_tx = -math.inf
        self._next_tx = now  # the first packet goes at once (unless passive)
        self._detect_at = math.inf
        self.last_rx = -math.inf

    def __repr__(self) -> str:
        return (
            f"<SessionMachine(discr={self.local_discr}, state={self.state}, remote={self.remote_state}, "
            f"tx={self.tx_interval() * 1e3:g}ms, detect={self.detection_time() * 1e3:g}ms)>"
        )

    # -- timers ----------------------------------------------------------------------

    def tx_interval(self) -> float:
        """Seconds between our periodic packets before jitter: the larger of ours and the peer's limit (6.8.7)."""
        return max(self._tx_in_use, self.remote_min_rx) * _US

    def detection_time(self) -> float:
        """Seconds without a packet before the session fails: remote multiplier x agreed remote interval (6.8.4)."""
        return self.remote_detect_mult * max(self._rx_in_use, self.remote_desired_min_tx) * _US

    def sending(self) -> bool:
        """Whether periodic packets go out now (6.8.7: not before a passive end heard the peer, not at MinRx 0)."""
        if self.passive and self.remote_discr == 0:
            return False
        return self.remote_min_rx != 0

    def deadline(self) -> float:
        """When :meth:`tick` has work: the next periodic packet or the end of the detection time."""
        return min(self._next_tx if self.sending() else math.inf, self._detect_at)

    def set_timers(self, *, desired_min_tx: int, required_min_rx: int, detect_mult: int, now: float) -> None:
        """Change the configured timers; while Up, through a Poll Sequence (6.8.3)."""
        self._configured_tx = desired_min_tx
        self.detect_mult = detect_mult
        old_tx, old_rx = self.desired_min_tx, self.required_min_rx
        self.required_min_rx = required_min_rx
        self.desired_min_tx = desired_min_tx if self.state == State.UP else max(desired_min_tx, SLOW_TX)
        if self.state == State.UP and (self.desired_min_tx, required_min_rx) != (old_tx, old_rx):
            # A faster tx and a slower rx are safe at once; the others wait for the peer's Final.
            self._tx_in_use = min(self._tx_in_use, self.desired_min_tx)
            self._rx_in_use = max(self._rx_in_use, required_min_rx)
            self.poll_active = True
        else:
            self._tx_in_use, self._rx_in_use = self.desired_min_tx, required_min_rx
        self._reschedule(now)

    def _end_poll(self) -> None:
        self.poll_active = False
        self._tx_in_use, self._rx_in_use = self.desired_min_tx, self.required_min_rx

    def _reschedule(self, now: float) -> None:
        """The interval changed: the next periodic packet goes one new (jittered) interval after the last one."""
        if self._last_tx > -math.inf:
            self._next_tx = max(now, self._last_tx + self._jittered())

    def _jittered(self) -> float:
        # 6.8.7: 0-25 % shorter at random; with a multiplier of 1, 10-25 % shorter.
        top = 0.9 if self.detect_mult == 1 else 1.0
        return self.tx_interval() * self._rng.uniform(0.75, top)

    # -- state -----------------------------------------------------------------------

    def _set_state(self, new: State, diag: int, now: float, *, remote_admin_down: bool = False) -> Transition:
        old, self.state, self.local_diag = self.state, new, diag
        if new == State.UP:
            slow, self.desired_min_tx = self.desired_min_tx, self._configured_tx
            self._tx_in_use = min(self._tx_in_use, self.desired_min_tx)  # faster at once, as 6.8.3 allows
            self.poll_active = self.desired_min_tx != slow  # the peer confirms the new interval with a Final
        else:
            self.desired_min_tx = max(self._configured_tx, SLOW_TX)
            self._end_poll()  # Poll Sequences belong to Up sessions
        self._next_tx = now  # tell the peer at once rather than one (slow) interval later
        return Transition(old=old, new=new, diag=diag, remote_admin_down=remote_admin_down)

    def admin_down(self, now: float) -> Transition | None:
        """Stop the session on our side (6.8.16): packets say AdminDown, the peer must not see a failure."""
        if self.state == State.ADMIN_DOWN:
            return None
        return self._set_state(State.ADMIN_DOWN, Diag.ADMIN_DOWN, now)

    def enable(self, now: float) -> Transition | None:
        """Leave AdminDown: back to Down, where the three-way handshake starts again."""
        if self.state != State.ADMIN_DOWN:
            return None
        return self._set_state(State.DOWN, Diag.NONE, now)

    # -- events ----------------------------------------------------------------------

    def receive(self, pkt: ControlPacket, now: float, *, raw: bytes = b"") -> Received:
        """Apply RFC 5880 6.8.6 to a decoded packet demultiplexed to this session (*raw*: its bytes, for digests)."""
        if pkt.your_discr == 0 and pkt.state not in (State.DOWN, State.ADMIN_DOWN):
            return Received(discarded=f"your discriminator is 0 in state {pkt.state}")
        if pkt.your_discr not in (0, self.local_discr):
            return Received(discarded=f"your discriminator {pkt.your_discr} is not ours ({self.local_discr})")
        if self.auth is None:
            if pkt.auth is not None:
                return Received(discarded="authentication section present, but the session uses none")
        else:
            why = self.auth.check(raw, pkt)
            if why is not None:
                return Received(discarded=why)
        self.last_rx = now
        self.remote_discr = pkt.my_discr
        self.remote_state = pkt.state
        self.remote_diag = pkt.diag
        self.remote_demand = pkt.demand
        self.remote_detect_mult = pkt.detect_mult
        self.remote_desired_min_tx = pkt.desired_min_tx
        self.remote_min_echo_rx = pkt.required_min_echo_rx
        if pkt.final and self.poll_active:
            self._end_poll()
        if pkt.required_min_rx != self.remote_min_rx:
            self.remote_min_rx = pkt.required_min_rx
            self._reschedule(now)
        self._detect_at = now + self.detection_time()
        if self.state == State.ADMIN_DOWN:
            return Received(reply_final=pkt.poll)
        transition = None
        if pkt.state == State.ADMIN_DOWN:
            if self.state != State.DOWN:
                transition = self._set_state(State.DOWN, Diag.NEIGHBOR_DOWN, now, remote_admin_down=True)
        elif self.state == State.DOWN:
            if pkt.state == State.DOWN:
                transition = self._set_state(State.INIT, Diag.NONE, now)
            elif pkt.state == State.INIT:
                transition = self._set_state(State.UP, Diag.NONE, now)
        elif self.state == State.INIT:
            if pkt.state in (State.INIT, State.UP):
                transition = self._set_state(State.UP, Diag.NONE, now)
        elif pkt.state == State.DOWN:  # we are Up
            transition = self._set_state(State.DOWN, Diag.NEIGHBOR_DOWN, now)
        return Received(transition=transition, reply_final=pkt.poll)

    def tick(self, now: float) -> tuple[Transition | None, ControlPacket | None]:
        """Run the timers due at *now*: the detection time, then the periodic packet (to send) if due."""
        transition = None
        if now >= self._detect_at:
            self._detect_at = math.inf
            # 6.8.1: a detection time without a packet forgets the peer.
            self.remote_discr, self.remote_state, self.remote_min_rx = 0, State.DOWN, 1
            self.remote_desired_min_tx = self.remote_detect_mult = 0
            if self.auth is not None:
                self.auth.reset()
            if self.state in (State.INIT, State.UP):
                transition = self._set_state(State.DOWN, Diag.DETECTION_TIME_EXPIRED, now)
        pkt = self.transmit(now) if self.sending() and now >= self._next_tx else None
        return transition, pkt

    def transmit(self, now: float, *, final: bool = False) -> ControlPacket:
        """The packet to send now (a Final answers a Poll); the next periodic one is due one jittered interval later."""
        self._last_tx = now
        self._next_tx = now + self._jittered()
        return ControlPacket(
            state=self.state,
            diag=self.local_diag,
            poll=self.poll_active and not final,
            final=final,
            detect_mult=self.detect_mult,
            my_discr=self.local_discr,
            your_discr=self.remote_discr,
            desired_min_tx=self.desired_min_tx,
            required_min_rx=self.required_min_rx,
            required_min_echo_rx=0,
        )

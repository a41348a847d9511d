"""The pure BFD session state machine: RFC 5880 6.8.6 transitions, timers (6.8.3, 6.8.4, 6.8.7), Poll/Final."""

from __future__ import annotations

import itertools
import random

import pytest
from metallb.announcers.bgp.bfd.auth import Authenticator, AuthKey
from metallb.announcers.bgp.bfd.machine import SLOW_TX, SessionMachine
from metallb.announcers.bgp.bfd.packet import AuthType, ControlPacket, Diag, State, decode, encode

PEER_DISCR = 0xBEEF
MS = 1000  # µs


def machine(**kwargs) -> SessionMachine:
    """A session with 100 ms x 3 timers, discriminator 1, seeded jitter."""
    options = {"local_discr": 1, "desired_min_tx": 100 * MS, "required_min_rx": 100 * MS, "detect_mult": 3}
    options.update(kwargs)
    return SessionMachine(rng=random.Random(0), **options)


def peer(state: State, *, your: int = 1, **kwargs) -> ControlPacket:
    """A packet from the peer: 100 ms x 3 unless given."""
    fields = {"detect_mult": 3, "my_discr": PEER_DISCR, "desired_min_tx": 100 * MS, "required_min_rx": 100 * MS}
    fields.update(kwargs)
    return ControlPacket(state=state, your_discr=your, **fields)


def in_state(state: State, now: float = 0.0) -> SessionMachine:
    """A machine driven into *state* by the peer's packets (or by admin_down)."""
    m = machine(now=now)
    if state == State.ADMIN_DOWN:
        m.admin_down(now)
    if state in (State.INIT, State.UP):
        m.receive(peer(State.DOWN, your=0), now)
    if state == State.UP:
        m.receive(peer(State.UP), now)
    assert m.state == state
    return m


def periodic(
    m: SessionMachine, start: float, end: float, *, feed: ControlPacket | None = None
) -> list[tuple[float, ControlPacket]]:
    """Run the timers from *start* to *end* as the event loop would; return the packets sent, with times.

    With *feed*, the peer sends that packet every 50 ms, so the session stays Up.
    """
    sent = []
    now, fed = start, start
    while (now := max(now, min(m.deadline(), fed + 0.05 if feed else end))) < end:
        if feed is not None and now >= fed + 0.05:
            fed = now
            m.receive(feed, now)
        _, pkt = m.tick(now)
        if pkt is not None:
            sent.append((now, pkt))
    return sent


# RFC 5880 6.8.6, the state rules: (our state, received state) -> (our new state, diag).
TRANSITIONS = [
    (State.DOWN, State.ADMIN_DOWN, State.DOWN, Diag.NONE),
    (State.DOWN, State.DOWN, State.INIT, Diag.NONE),
    (State.DOWN, State.INIT, State.UP, Diag.NONE),
    (State.DOWN, State.UP, State.DOWN, Diag.NONE),
    (State.INIT, State.ADMIN_DOWN, State.DOWN, Diag.NEIGHBOR_DOWN),
    (State.INIT, State.DOWN, State.INIT, Diag.NONE),
    (State.INIT, State.INIT, State.UP, Diag.NONE),
    (State.INIT, State.UP, State.UP, Diag.NONE),
    (State.UP, State.ADMIN_DOWN, State.DOWN, Diag.NEIGHBOR_DOWN),
    (State.UP, State.DOWN, State.DOWN, Diag.NEIGHBOR_DOWN),
    (State.UP, State.INIT, State.UP, Diag.NONE),
    (State.UP, State.UP, State.UP, Diag.NONE),
    (State.ADMIN_DOWN, State.DOWN, State.ADMIN_DOWN, Diag.ADMIN_DOWN),
    (State.ADMIN_DOWN, State.UP, State.ADMIN_DOWN, Diag.ADMIN_DOWN),
]


class TestTransitions:
    """The state table of RFC 5880 6.8.6, and the discard rules that depend on the session."""

    @pytest.mark.parametrize(("ours", "theirs", "new", "diag"), TRANSITIONS)
    def test_state_table(self, ours, theirs, new, diag):
        """Each (local, received) pair leads to the RFC's state and diagnostic, reporting a change only on one."""
        m = in_state(ours)
        result = m.receive(peer(theirs), 1.0)
        assert not result.discarded
        assert (m.state, m.local_diag) == (new, diag)
        assert (result.transition is not None) == (new != ours)
        if result.transition is not None:
            assert (result.transition.old, result.transition.new, result.transition.diag) == (ours, new, diag)

    def test_three_way_handshake_between_two_machines(self):
        """Two machines wired to each other come Up within two exchanges, starting from silence."""
        a, b = machine(local_discr=1), machine(local_discr=2)
        for _ in range(3):
            b.receive(a.transmit(0.0), 0.0)
            a.receive(b.transmit(0.0), 0.0)
        assert (a.state, b.state) == (State.UP, State.UP)
        assert (a.remote_discr, b.remote_discr) == (2, 1)

    def test_remote_admin_down_is_not_a_failure(self):
        """Up -> Down because the peer said AdminDown is flagged, so clients keep their sessions (RFC 5882 3.2)."""
        m = in_state(State.UP)
        transition = m.receive(peer(State.ADMIN_DOWN), 1.0).transition
        assert transition is not None and transition.remote_admin_down and not transition.failed
        m = in_state(State.UP)
        transition = m.receive(peer(State.DOWN), 1.0).transition
        assert transition is not None and transition.failed

    @pytest.mark.parametrize("state", [State.INIT, State.UP])
    def test_zero_your_discriminator_is_discarded_unless_down(self, state):
        """Your Discriminator 0 is only valid from a peer in Down or AdminDown (step 8)."""
        m = in_state(State.DOWN)
        result = m.receive(peer(state, your=0), 1.0)
        assert result.discarded == f"your discriminator is 0 in state {state}"
        assert m.remote_discr == 0

    def test_foreign_your_discriminator_is_discarded(self):
        """A packet for another session's discriminator changes nothing."""
        m = in_state(State.UP)
        assert m.receive(peer(State.DOWN, your=99), 1.0).discarded.startswith("your discriminator 99 is not ours")
        assert m.state == State.UP

    def test_authentication_must_match_the_session(self):
        """A packet without auth on a session with, and the reverse, is discarded (step 10); a signed one passes."""
        unsigned = peer(State.DOWN, your=0)
        key = AuthKey(type=AuthType.KEYED_SHA1, secret=b"k")
        m = machine(auth=Authenticator(key))
        assert "no authentication section" in m.receive(unsigned, 0.0, raw=encode(unsigned)).discarded
        raw = Authenticator(key).sign(unsigned)
        assert not m.receive(decode(raw), 0.0, raw=raw).discarded and m.state == State.INIT
        plain = machine()
        assert plain.receive(decode(raw), 0.0, raw=raw).discarded.startswith("authentication section present")
        assert plain.receive(unsigned, 0.0).transition is not None

    def test_admin_down_and_enable(self):
        """AdminDown is sent with diag 7 at once; enable goes back to Down."""
        m = in_state(State.UP)
        transition = m.admin_down(2.0)
        assert transition is not None and transition.new == State.ADMIN_DOWN
        _, pkt = m.tick(2.0)
        assert pkt is not None and (pkt.state, pkt.diag) == (State.ADMIN_DOWN, Diag.ADMIN_DOWN)
        assert m.admin_down(2.0) is None
        assert m.enable(3.0) is not None and m.state == State.DOWN
        assert m.enable(3.0) is None


class TestDetection:
    """Detection time (6.8.4) and what its expiry does."""

    def test_detection_time_is_remote_multiplier_times_agreed_interval(self):
        """The peer's multiplier times the larger of our RequiredMinRx and its DesiredMinTx."""
        m = in_state(State.DOWN)
        m.receive(peer(State.DOWN, your=0, detect_mult=5, desired_min_tx=250 * MS), 0.0)
        assert m.detection_time() == pytest.approx(1.25)
        m.receive(peer(State.DOWN, your=0, detect_mult=2, desired_min_tx=20 * MS), 0.0)
        assert m.detection_time() == pytest.approx(0.2)  # 2 x our 100 ms

    def test_expiry_takes_an_up_session_down(self):
        """No packet for the detection time: Down with diag 1, the peer forgotten, a packet sent at once."""
        m = in_state(State.UP, now=10.0)
        m.receive(peer(State.UP), 10.0)
        assert m.deadline() <= 10.1
        transition, _ = m.tick(10.299)
        assert transition is None and m.state == State.UP
        transition, pkt = m.tick(10.3)
        assert transition is not None and transition.failed and transition.diag == Diag.DETECTION_TIME_EXPIRED
        assert pkt is not None and (pkt.state, pkt.diag, pkt.your_discr) == (State.DOWN, 1, 0)
        assert (m.remote_discr, m.remote_state, m.remote_min_rx) == (0, State.DOWN, 1)

    def test_expiry_while_down_forgets_the_peer_only(self):
        """In Down, the detection time passing clears the remote discriminator (6.8.1) and nothing else."""
        m = in_state(State.DOWN)
        m.receive(peer(State.ADMIN_DOWN, your=0), 0.0)
        transition, _ = m.tick(5.0)
        assert transition is None and m.state == State.DOWN and m.remote_discr == 0

    def test_each_packet_restarts_the_detection_time(self):
        """The deadline moves with every accepted packet, never with a discarded one."""
        m = in_state(State.UP)
        m.receive(peer(State.UP), 1.0)
        m.receive(peer(State.UP, your=42), 1.2)  # discarded
        assert m.tick(1.3)[0] is not None


class TestTimers:
    """Slow start, Poll/Final, jitter, passive role (6.8.3, 6.8.7)."""

    def test_slow_while_not_up_then_fast_with_a_poll(self):
        """Down advertises and uses 1 s; Up advertises the profile's interval with Poll until the Final."""
        m = machine(now=0.0)
        first = m.tick(0.0)[1]
        assert first is not None and first.desired_min_tx == SLOW_TX and m.tx_interval() == 1.0
        m.receive(peer(State.DOWN, your=0), 0.01)
        m.receive(peer(State.UP), 0.02)
        assert m.state == State.UP and m.tx_interval() == pytest.approx(0.1)  # faster at once
        sent = periodic(m, 0.02, 0.25)
        assert sent and all(p.poll and p.desired_min_tx == 100 * MS for _, p in sent)
        m.receive(peer(State.UP, final=True), 0.25)
        assert not m.poll_active
        assert all(not p.poll for _, p in periodic(m, 0.25, 0.6))

    def test_poll_is_answered_with_a_final(self):
        """A Poll asks for a Final at once; the Final packet never carries Poll."""
        m = in_state(State.UP)
        assert m.poll_active
        result = m.receive(peer(State.UP, poll=True), 1.0)
        assert result.reply_final
        pkt = m.transmit(1.0, final=True)
        assert pkt.final and not pkt.poll

    def test_going_down_returns_to_slow(self):
        """Leaving Up advertises 1 s again, with no Poll."""
        m = in_state(State.UP)
        m.receive(peer(State.DOWN), 1.0)
        pkt = m.tick(1.0)[1]
        assert pkt is not None and pkt.desired_min_tx == SLOW_TX and not pkt.poll

    @pytest.mark.parametrize(("mult", "low", "high"), [(3, 0.75, 1.0), (1, 0.75, 0.9)])
    def test_jitter_bounds(self, mult, low, high):
        """Intervals are 75-100 % of the negotiated one, or 75-90 % with a multiplier of 1."""
        m = in_state(State.UP)
        m.detect_mult = mult
        m.receive(peer(State.UP, final=True), 0.0)
        times = [t for t, _ in periodic(m, 0.0, 60.0, feed=peer(State.UP))]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(gaps) > 500
        assert low * 0.1 - 1e-9 <= min(gaps) and max(gaps) <= high * 0.1 + 1e-9
        assert max(gaps) > (high - 0.02) * 0.1 and min(gaps) < (low + 0.02) * 0.1  # the whole range is used

    def test_peer_required_min_rx_slows_us(self):
        """We never send faster than the peer's RequiredMinRx; 0 stops periodic packets."""
        m = in_state(State.UP)
        m.receive(peer(State.UP, required_min_rx=400 * MS, final=True), 0.0)
        assert m.tx_interval() == pytest.approx(0.4)
        m.receive(peer(State.UP, required_min_rx=0), 0.0)
        assert not m.sending() and periodic(m, 0.0, 5.0, feed=peer(State.UP, required_min_rx=0)) == []

    def test_passive_waits_for_the_peer(self):
        """A passive session sends nothing until the peer has sent a packet, then answers."""
        m = machine(passive=True, now=0.0)
        assert periodic(m, 0.0, 10.0) == []
        m.receive(peer(State.DOWN, your=0), 10.0)
        sent = periodic(m, 10.0, 10.5)
        assert sent and sent[0][1].state == State.INIT and sent[0][1].your_discr == PEER_DISCR

    def test_timer_change_while_up_uses_a_poll(self):
        """Slower tx waits for the Final; a lower RequiredMinRx keeps the old detection time until then (6.8.3)."""
        m = in_state(State.UP)
        m.receive(peer(State.UP, final=True), 0.0)
        m.set_timers(desired_min_tx=500 * MS, required_min_rx=50 * MS, detect_mult=3, now=0.0)
        assert m.poll_active and m.tx_interval() == pytest.approx(0.1) and m.detection_time() == pytest.approx(0.3)
        pkt = m.transmit(0.0)
        assert pkt.poll and pkt.desired_min_tx == 500 * MS and pkt.required_min_rx == 50 * MS
        m.receive(peer(State.UP, final=True, desired_min_tx=60 * MS), 0.1)
        assert m.tx_interval() == pytest.approx(0.5) and m.detection_time() == pytest.approx(0.18)

    def test_timer_change_while_down_applies_at_once(self):
        """Without an Up session there is no Poll: values apply at once (tx still at least 1 s)."""
        m = machine()
        m.set_timers(desired_min_tx=50 * MS, required_min_rx=70 * MS, detect_mult=4, now=0.0)
        assert not m.poll_active and m.transmit(0.0).required_min_rx == 70 * MS
        assert m.transmit(0.0).desired_min_tx == SLOW_TX and m.transmit(0.0).detect_mult == 4

    def test_arguments_are_checked(self):
        """A zero discriminator or multiplier is refused at construction."""
        with pytest.raises(ValueError, match="discriminator"):
            machine(local_discr=0)
        with pytest.raises(ValueError, match="multiplier"):
            machine(detect_mult=0)

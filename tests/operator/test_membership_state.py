"""The SWIM/Lifeguard state machine, one transition at a time, driven by hand: no sockets, no clock."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metallb.operator.membership import Kind, Packet, Params, Send, Status, Swim, Transport, Update
from metallb.operator.membership.messages import MAX_META, WireError, decode, encode

INC = 100  # this member's incarnation
PEER = 200  # every other member's


def group(*others: str, name: str = "a", heard: bool = True, **params) -> Swim:
    """Member *name* among *others*, each of which it has heard from (at incarnation PEER) unless *heard* is off."""
    node = Swim(name, incarnation=INC, now=0.0, params=Params(**params), rng=random.Random(7))
    node.set_members([name, *others], 0.0)
    if heard:
        for other in others:
            node.receive(0.0, packet(other))
    return node


def packet(sender: str, kind: Kind = Kind.GOSSIP, *, inc: int = PEER, **fields) -> Packet:
    return Packet(kind=kind, sender=sender, incarnation=inc, **fields)


def news(node: Swim, sender: str, *updates: Update, now: float = 0.0) -> list[Send]:
    """Gossip from *sender* carrying *updates*."""
    return node.receive(now, packet(sender, updates=updates))


def of(sends: list[Send], kind: Kind, transport: Transport | None = None) -> list[Send]:
    return [s for s in sends if s.packet.kind == kind and (transport is None or s.transport == transport)]


def carrying(sends: list[Send], update: Update) -> list[Send]:
    return [s for s in sends if update in s.packet.updates]


def ticks(node: Swim, until: float) -> list[Send]:
    """Run every timer up to *until*, in order, collecting what is sent."""
    out: list[Send] = []
    while (when := node.next_deadline()) <= until:
        out += node.tick(when)
    return out


class TestParams:
    def test_suspicion_timeout_grows_with_log_n_above_a_floor(self):
        """Minimum = mult * log10(n) * probe interval (at least suspicion_min), maximum 3x; k = 0 in small groups."""
        params = Params()
        assert params.suspicion_bounds(3) == (0.5, 1.5, 0)
        low, high, k = params.suspicion_bounds(500)
        assert low == pytest.approx(2 * math.log10(500) * 0.1) and high == pytest.approx(3 * low) and k == 3

    def test_retransmit_limit_is_lambda_log_n(self):
        """Each update is sent retransmit_mult * ceil(log10(n + 1)) times."""
        assert [Params().retransmit_limit(n) for n in (3, 9, 100, 500)] == [4, 4, 12, 12]

    def test_push_pull_slows_down_beyond_32_members(self):
        """memberlist's pushPullScale: 30 s up to 32 members, then 30 s times ceil(log2(n / 32)) + 1."""
        assert Params().sync_period(32) == 30.0
        assert Params().sync_period(500) == 150.0

    def test_bad_parameters_are_one_line(self):
        """A probe timeout not below the interval is rejected, naming both."""
        with pytest.raises(ValueError, match=r"^probe_timeout 0.2: must be above 0 and below probe_interval 0.1$"):
            Params(probe_timeout=0.2)


class TestProbe:
    def test_acked_probe_is_no_suspicion(self):
        """A ping answered by an ack with its sequence number ends the probe well."""
        node = group("b")
        (ping,) = node.tick(0.0)
        assert (ping.to, ping.packet.kind, ping.packet.target) == ("b", Kind.PING, "b")
        node.receive(0.01, packet("b", Kind.ACK, seq=ping.packet.seq))
        ticks(node, 0.099)
        assert node.status_of("b") == Status.ALIVE
        assert (node.stats.probes, node.stats.probe_failures) == (1, 0)

    def test_no_ack_in_time_asks_k_others_and_tries_tcp(self):
        """At the probe timeout, indirect_checks members get a ping-req and the target a TCP ping."""
        node = group("b", "c", "d", "e", indirect_checks=2)
        (ping,) = node.tick(0.0)
        assert node.tick(0.039) == []
        sends = node.tick(0.04)
        requests = of(sends, Kind.PING_REQ)
        assert len(requests) == 2 and ping.to not in {s.to for s in requests}
        assert {(s.packet.seq, s.packet.target) for s in requests} == {(ping.packet.seq, ping.to)}
        (tcp,) = of(sends, Kind.PING, Transport.TCP)
        assert (tcp.to, tcp.packet.seq) == (ping.to, ping.packet.seq)

    def test_no_ack_at_all_makes_the_target_suspect_and_says_so(self):
        """Without any ack by the end of the interval the target is suspect, and the next packets carry it."""
        node = group("b")
        node.tick(0.0)
        ticks(node, 0.1)
        assert node.status_of("b") == Status.SUSPECT and node.stats.suspicions == 1
        assert "b" in node.live(0.1), "a suspect still counts as live: one lost probe never moves an address"
        sends = node.tick(0.2)  # the next probe of b carries the suspicion (buddy system)
        assert carrying(sends, Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="a"))

    def test_an_ack_through_a_helper_counts(self):
        """A forwarded ack (a helper's) before the end of the interval is as good as the target's."""
        node = group("b", "c")
        (ping,) = node.tick(0.0)
        helper = next(s.to for s in of(node.tick(0.04), Kind.PING_REQ))
        node.receive(0.06, packet(helper, Kind.ACK, seq=ping.packet.seq))
        ticks(node, 0.1)
        assert node.status_of(ping.to) == Status.ALIVE

    def test_a_late_direct_ack_still_counts(self):
        """An ack after the probe timeout but within the interval ends the probe well."""
        node = group("b")
        (ping,) = node.tick(0.0)
        node.tick(0.04)
        node.receive(0.09, packet("b", Kind.ACK, seq=ping.packet.seq))
        ticks(node, 0.1)
        assert node.status_of("b") == Status.ALIVE and node.stats.probe_failures == 0

    def test_round_robin_probes_everyone_once_per_round(self):
        """In n - 1 probe intervals every other member is probed exactly once."""
        node = group("b", "c", "d", "e")
        targets = []
        for i in range(4):
            (ping,) = of(node.tick(i * 0.1), Kind.PING)
            targets.append(ping.to)
            node.receive(i * 0.1 + 0.001, packet(ping.to, Kind.ACK, seq=ping.packet.seq))
        assert sorted(targets) == ["b", "c", "d", "e"]


class TestIndirectProbe:
    def test_ping_req_pings_the_target_and_forwards_its_ack(self):
        """A helper pings the target with its own sequence and forwards the ack with the requester's."""
        node = group("b", "c")
        (ping,) = node.receive(0.0, packet("b", Kind.PING_REQ, seq=77, target="c"))
        assert (ping.to, ping.packet.kind, ping.packet.target) == ("c", Kind.PING, "c")
        (ack,) = node.receive(0.001, packet("c", Kind.ACK, seq=ping.packet.seq))
        assert (ack.to, ack.packet.kind, ack.packet.seq) == ("b", Kind.ACK, 77)

    def test_no_answer_in_time_is_a_nack(self):
        """Without the target's ack within the probe timeout the helper nacks, so the requester knows it is fine."""
        node = group("b", "c")
        node.receive(0.0, packet("b", Kind.PING_REQ, seq=77, target="c"))
        assert of(node.tick(0.039), Kind.NACK) == []
        (nack,) = of(node.tick(0.04), Kind.NACK)
        assert (nack.to, nack.packet.seq) == ("b", 77)


class TestSuspicion:
    def test_a_lone_suspicion_lasts_the_maximum(self):
        """Without confirmations a suspect dies after the maximum timeout (3 x 0.5 s among 8 members)."""
        node = group("b", "c", "d", "e", "f", "g", "h")
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="c"))
        node.tick(1.49)
        assert node.status_of("b") == Status.SUSPECT
        node.tick(1.51)
        assert node.status_of("b") == Status.DEAD and node.stats.deaths == 1

    def test_independent_confirmations_shorten_it_to_the_minimum(self):
        """Lifeguard: one confirmation of k = 3 gives max - (max - min) log 2 / log 4; three give the minimum."""
        node = group("b", "c", "d", "e", "f", "g", "h")
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="c"))
        news(node, "d", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="d"))
        node.tick(0.99)
        assert node.status_of("b") == Status.SUSPECT
        node.tick(1.01)
        assert node.status_of("b") == Status.DEAD
        node = group("b", "c", "d", "e", "f", "g", "h")
        for source in "cdef":
            news(node, source, Update(status=Status.SUSPECT, name="b", incarnation=PEER, source=source))
        node.tick(0.51)
        assert node.status_of("b") == Status.DEAD

    def test_new_confirmations_are_gossiped_again_repeats_are_not(self):
        """A confirmation from a new member is passed on (others count it too); the same one twice is not."""
        node = group("b", "c", "d", "e", "f", "g", "h")
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="c"))
        ticks(node, 1.0)  # until the queue is drained
        news(node, "d", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="d"), now=1.0)
        assert node.pending_broadcasts == 1
        ticks(node, 2.0)
        news(node, "e", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="d"), now=2.0)
        assert node.pending_broadcasts == 0

    def test_a_higher_incarnation_refutes(self):
        """Alive at a higher incarnation clears the suspicion: no death when the timer would have run out."""
        node = group("b", "c", "d")
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="c"))
        news(node, "c", Update(status=Status.ALIVE, name="b", incarnation=PEER + 1, source="b"), now=0.2)
        assert node.status_of("b") == Status.ALIVE
        ticks(node, 0.3)
        node.tick(2.0)
        assert node.status_of("b") != Status.DEAD

    def test_alive_at_the_same_incarnation_does_not(self):
        """Only a newer incarnation refutes a suspicion."""
        node = group("b", "c", "d")
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="c"))
        news(node, "c", Update(status=Status.ALIVE, name="b", incarnation=PEER, source="b"))
        assert node.status_of("b") == Status.SUSPECT

    def test_an_older_suspicion_is_ignored(self):
        """A suspicion about an incarnation older than the one known changes nothing."""
        node = group("b", "c")
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER - 1, source="c"))
        assert node.status_of("b") == Status.ALIVE

    @pytest.mark.parametrize("status", [Status.SUSPECT, Status.DEAD])
    def test_news_of_my_own_death_or_suspicion_is_refuted(self, status):
        """This member bumps its incarnation past the claim and gossips that it is alive; its health worsens."""
        node = group("b", "c")
        news(node, "b", Update(status=status, name="a", incarnation=INC, source="b"))
        assert node.incarnation == INC + 1 and node.stats.refutations == 1 and node.health == 1
        sends = node.tick(0.0)
        assert carrying(sends, Update(status=Status.ALIVE, name="a", incarnation=INC + 1, source="a"))

    def test_suspicion_timeouts_scale_with_local_health(self):
        """With health score 2 every timeout is three times as long: a lone suspicion (k = 0) lasts 1.5 s."""
        node = group("b", "c", "d")
        news(node, "b", Update(status=Status.SUSPECT, name="a", incarnation=INC, source="b"))
        news(node, "b", Update(status=Status.SUSPECT, name="a", incarnation=INC + 1, source="b"))
        assert node.health == 2
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="c"))
        node.tick(1.49)
        assert node.status_of("b") == Status.SUSPECT
        node.tick(1.51)
        assert node.status_of("b") == Status.DEAD


class TestDeath:
    def test_dead_members_are_not_live_nor_probed_but_pinged_now_and_then(self):
        """A dead member leaves the live set and the probe rounds; once a second someone pings it with the news."""
        node = group("b", "c")
        news(node, "c", Update(status=Status.DEAD, name="b", incarnation=PEER, source="c"))
        assert node.status_of("b") == Status.DEAD and "b" not in node.live(0.0)
        sends = ticks(node, 0.99)
        assert {s.to for s in of(sends, Kind.PING)} == {"c"}
        (ping,) = of(node.tick(1.0), Kind.PING)
        assert ping.to == "b" and ping.packet.updates[0] == Update(
            status=Status.DEAD, name="b", incarnation=PEER, source="a"
        )

    def test_a_goodbye_is_left_at_once(self):
        """A dead notice from the member itself is a goodbye: left, not live, without a suspicion."""
        node = group("b", "c")
        news(node, "b", Update(status=Status.LEFT, name="b", incarnation=PEER, source="b"))
        assert node.status_of("b") == Status.LEFT and node.live(0.0) == {"a", "c"}

    def test_a_member_held_dead_is_told_when_it_talks(self):
        """A packet from a member held dead (not refuted yet) is answered with the news, once per interval."""
        node = group("b", "c")
        news(node, "c", Update(status=Status.DEAD, name="b", incarnation=PEER, source="c"))
        (notice,) = news(node, "b", now=0.5)
        assert notice.to == "b" and notice.packet.updates[0] == Update(
            status=Status.DEAD, name="b", incarnation=PEER, source="a"
        )
        assert news(node, "b", now=0.55) == []

    def test_a_returning_member_is_held_down(self):
        """Back at a higher incarnation, a dead member is alive but counts as live only after the hold-down."""
        node = group("b", "c", "d")
        news(node, "c", Update(status=Status.DEAD, name="b", incarnation=PEER, source="c"))
        node.receive(10.0, packet("b", inc=PEER + 1))
        assert node.status_of("b") == Status.ALIVE
        assert "b" not in node.live(14.9) and "b" in node.live(15.0)
        assert node.next_deadline() <= 15.0, "the owner is woken when the hold-down ends"

    def test_a_member_cut_off_takes_the_others_back_at_once(self):
        """When most others were down in its view, this member was the one cut off: no hold-down for them."""
        node = group("b", "c", "d")
        news(
            node,
            "b",
            Update(status=Status.DEAD, name="c", incarnation=PEER, source="b"),
            Update(status=Status.DEAD, name="d", incarnation=PEER, source="b"),
        )
        news(node, "c", Update(status=Status.DEAD, name="b", incarnation=PEER, source="c"))
        node.receive(10.0, packet("b", inc=PEER + 1))
        assert "b" in node.live(10.0)

    def test_a_member_lost_for_a_moment_is_not_the_cut_off_one_later(self):
        """Most others lost, one of them back at once (a refuted false death): a node really gone is still held down."""
        node = group("b", "c")
        news(node, "c", Update(status=Status.DEAD, name="b", incarnation=PEER, source="c"), now=1.0)  # b gone
        news(node, "b", Update(status=Status.DEAD, name="c", incarnation=PEER, source="b"), now=1.0)  # c, falsely
        node.receive(1.5, packet("c", inc=PEER + 1))  # c refutes: back at once, this member was cut off from both
        assert node.live(1.5) == {"a", "c"}
        node.receive(
            3.0, packet("b", inc=PEER + 1, updates=(Update(status=Status.DEAD, name="a", incarnation=INC, source="b"),))
        )
        assert node.live(3.0) == {"a", "c"} and node.live(7.9) == {"a", "c"}, "b returns: held down, no step back"
        assert node.live(8.0) == {"a", "b", "c"}

    def test_a_member_cut_off_holding_itself_down_takes_the_last_ones_back_at_once(self):
        """Once it steps back as the returning one, members that come back after its isolation ended count at once."""
        node = group("b", "c", "d")
        for name, source in (("b", "c"), ("c", "d"), ("d", "b")):
            news(node, source, Update(status=Status.DEAD, name=name, incarnation=PEER, source=source))
        node.receive(
            10.0,
            packet("b", inc=PEER + 1, updates=(Update(status=Status.DEAD, name="a", incarnation=INC, source="b"),)),
        )
        node.receive(10.1, packet("c", inc=PEER + 1))  # no longer cut off (1 of 3 down), but holding itself down
        node.receive(10.2, packet("d", inc=PEER + 1))
        assert node.live(10.2) == {"b", "c", "d"} and "a" in node.live(15.1)

    def test_a_member_held_dead_is_not_believed_about_others_until_it_refutes(self):
        """The returning member's stale view (everyone else dead) is ignored until it refutes; news about us counts."""
        node = group("b", "c")
        news(node, "c", Update(status=Status.DEAD, name="b", incarnation=PEER, source="c"), now=1.0)
        news(node, "b", Update(status=Status.DEAD, name="c", incarnation=PEER, source="b"), now=2.0)
        assert node.status_of("c") == Status.ALIVE, "b's word, while held dead, does not cut us off from c"
        node.receive(2.5, packet("b", inc=PEER + 1))
        assert node.live(2.5) == {"a", "c"} and node.live(7.5) == {"a", "b", "c"}

    def test_it_steps_back_when_a_member_it_trusts_held_it_dead(self):
        """Refuting its own death, announced by a member up in its view, it leaves its own live set for the hold-down."""
        node = group("b", "c")
        news(node, "b", Update(status=Status.DEAD, name="a", incarnation=INC, source="b"), now=1.0)
        assert node.live(1.0) == {"b", "c"} and node.live(6.0) == {"a", "b", "c"}

    def test_in_a_split_of_two_neither_steps_back(self):
        """Two members that held each other dead both keep counting themselves: no one would answer otherwise."""
        node = group("b")
        node.tick(0.0)
        ticks(node, 2.0)
        assert node.status_of("b") == Status.DEAD
        news(node, "b", Update(status=Status.DEAD, name="a", incarnation=INC, source="b"), now=3.0)
        node.receive(
            3.0,
            packet("b", inc=PEER + 1, updates=(Update(status=Status.DEAD, name="a", incarnation=INC + 1, source="b"),)),
        )
        assert "a" in node.live(3.0)

    def test_a_restarted_process_learns_its_predecessor_was_held_dead(self):
        """A push-pull answer saying a member holds this name left (an older incarnation): it steps back as long."""
        node = group("b", "c", heard=False)
        node.receive(
            0.5,
            packet(
                "b", Kind.SYNC_REPLY, updates=(Update(status=Status.LEFT, name="a", incarnation=INC - 50, source="a"),)
            ),
        )
        assert node.incarnation == INC, "old news is not refuted"
        assert "a" not in node.live(0.5) and "a" in node.live(5.5)


class TestDissemination:
    def test_each_update_is_sent_a_bounded_number_of_times(self):
        """Among 5 members an update rides on exactly retransmit_mult * ceil(log10(6)) = 4 packets."""
        node = group("b", "c", "d", "e")
        update = Update(status=Status.DEAD, name="e", incarnation=PEER, source="b")
        news(node, "b", update)
        assert len(carrying(ticks(node, 3.0), update)) == Params().retransmit_limit(5) == 4

    def test_newest_first_within_the_payload_budget(self):
        """A packet takes the least-sent updates that fit; the rest wait for the next one."""
        names = [f"m{i}" for i in range(20)]
        node = group(*names, max_payload=200)
        for name in names[1:]:
            news(node, names[0], Update(status=Status.DEAD, name=name, incarnation=PEER, source=names[0]))
        (ping,) = of(node.tick(0.0), Kind.PING)
        assert 0 < len(ping.packet.updates) < 19
        assert sum(len(u.name) + 12 for u in ping.packet.updates) < 200

    def test_newer_news_replaces_older(self):
        """Only the latest update about a member waits to be sent."""
        node = group("b", "c", "d")
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="c"))
        news(node, "c", Update(status=Status.ALIVE, name="b", incarnation=PEER + 1, source="b"))
        assert node.pending_broadcasts == 1
        (ping,) = of(node.tick(0.0), Kind.PING)
        assert [u.status for u in ping.packet.updates if u.name == "b"] == [Status.ALIVE]

    def test_no_gossip_packets_when_there_is_nothing_to_say(self):
        """In steady state only probes go out: no gossip packets without pending updates."""
        node = group("b", "c", "d")
        sends = []
        for i in range(10):
            sends += node.tick(i * 0.1)
            for ping in of(sends, Kind.PING):
                node.receive(i * 0.1 + 0.001, packet(ping.to, Kind.ACK, seq=ping.packet.seq))
        assert of(sends, Kind.GOSSIP) == []


class TestMembership:
    def test_packets_from_non_members_are_ignored(self):
        """Kubernetes decides who is a member: a stranger's packet changes nothing."""
        node = group("b")
        assert node.receive(0.0, packet("x", Kind.PING, target="a")) == []
        assert node.stats.ignored == 1 and node.status_of("x") is None

    def test_gossip_cannot_add_a_member(self):
        """News about a name Kubernetes did not give is dropped."""
        node = group("b")
        news(node, "b", Update(status=Status.ALIVE, name="x", incarnation=PEER, source="x"))
        assert node.status_of("x") is None and "x" not in node.live(0.0)

    def test_a_newcomer_counts_only_once_heard_from(self):
        """A member Kubernetes adds is unconfirmed, not live, until a packet or news of it arrives."""
        node = group("b")
        node.set_members(["a", "b", "c"], 1.0)
        assert node.live(1.0) == {"a", "b"}
        node.receive(1.1, packet("c"))
        assert node.live(1.1) == {"a", "b", "c"}

    def test_a_removed_member_is_forgotten(self):
        """A member Kubernetes removes leaves every view and queue."""
        node = group("b", "c")
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER, source="c"))
        node.set_members(["a", "c"], 0.1)
        assert node.status_of("b") is None and node.pending_broadcasts == 0

    def test_push_pull_answers_with_its_view_and_merges_theirs(self):
        """A SYNC gets our view (over TCP); their dead is only our suspicion, their left is left."""
        node = group("b", "c", "d")
        sync = packet(
            "b",
            Kind.SYNC,
            updates=(
                Update(status=Status.DEAD, name="c", incarnation=PEER, source="b"),
                Update(status=Status.LEFT, name="d", incarnation=PEER, source="d"),
            ),
        )
        (reply,) = node.receive(0.0, sync)
        assert (reply.to, reply.packet.kind, reply.transport) == ("b", Kind.SYNC_REPLY, Transport.TCP)
        assert set(reply.packet.updates) >= {
            Update(status=Status.ALIVE, name="a", incarnation=INC, source="a"),
            Update(status=Status.ALIVE, name="c", incarnation=PEER, source="a"),
        }
        assert (node.status_of("c"), node.status_of("d")) == (Status.SUSPECT, Status.LEFT)
        assert node.synced

    def test_join_asks_up_to_three_members_over_tcp(self):
        """Joining is a push-pull with a few members."""
        sends = group("b", "c", "d", "e", heard=False).join(0.0)
        assert len(sends) == 3 and {(s.packet.kind, s.transport) for s in sends} == {(Kind.SYNC, Transport.TCP)}

    def test_leave_says_goodbye_to_every_member_up_and_refutes_nothing_after(self):
        """A leaving member sends its goodbye to all who may hear it, and no longer refutes."""
        node = group("b", "c", "d")
        news(node, "c", Update(status=Status.DEAD, name="d", incarnation=PEER, source="c"))
        sends = node.leave(1.0)
        assert {s.to for s in sends} == {"b", "c"}
        assert all(
            s.packet.updates == (Update(status=Status.LEFT, name="a", incarnation=INC, source="a"),) for s in sends
        )
        news(node, "b", Update(status=Status.DEAD, name="a", incarnation=INC, source="b"))
        assert node.incarnation == INC


class TestLocalHealth:
    def test_a_failed_probe_without_nacks_raises_health_and_slows_probing(self):
        """Three helpers that do not even nack: health 3, so the next probe times out after 4 x 0.04 s."""
        node = group("b", "c", "d", "e")
        node.tick(0.0)
        node.tick(0.04)
        node.tick(0.1)
        assert node.health == 3
        assert node.next_deadline() == pytest.approx(0.1 + 4 * 0.04)
        assert of(node.tick(0.25), Kind.PING_REQ) == []
        assert of(node.tick(0.26), Kind.PING_REQ)

    def test_nacks_as_expected_leave_health_alone(self):
        """When every helper nacks, the target is the problem, not this member."""
        node = group("b", "c", "d")
        (ping,) = node.tick(0.0)
        for request in of(node.tick(0.04), Kind.PING_REQ):
            node.receive(0.08, packet(request.to, Kind.NACK, seq=ping.packet.seq))
        node.tick(0.1)
        assert node.health == 0 and node.status_of(ping.to) == Status.SUSPECT

    def test_a_successful_probe_lowers_health(self):
        """Each acked probe takes one off the score."""
        node = group("b", "c")
        news(node, "b", Update(status=Status.SUSPECT, name="a", incarnation=INC, source="b"))
        assert node.health == 1
        (ping,) = of(node.tick(0.0), Kind.PING)
        node.receive(0.01, packet(ping.to, Kind.ACK, seq=ping.packet.seq))
        assert node.health == 0

    def test_health_is_capped(self):
        """The score stays below awareness_max."""
        node = group("b", awareness_max=3)
        for inc in range(INC, INC + 10):
            news(node, "b", Update(status=Status.SUSPECT, name="a", incarnation=inc, source="b"))
        assert node.health == 2


MACS_A = b"\x01\x02\x00\x00\x00\x00\x0a"
MACS_B = b"\x01\x02\x00\x00\x00\x00\x0b"


def alive(name: str, inc: int, meta: bytes | None) -> Update:
    """An alive update about *name* at *inc*, carrying *meta*."""
    return Update(status=Status.ALIVE, name=name, incarnation=inc, source=name, meta=meta)


class TestMeta:
    """Member meta (the speakers' MACs): versioned by incarnation, bounded, gossiped and pushed-pulled."""

    def test_set_meta_bumps_the_incarnation_and_gossips_it(self):
        """A new meta is a new incarnation, gossiped at once; setting the same meta again changes nothing."""
        node = group("b", "c")
        node.set_meta(MACS_A, 0.0)
        assert node.incarnation == INC + 1 and node.meta == MACS_A
        assert carrying(node.tick(0.0), alive("a", INC + 1, MACS_A))
        node.set_meta(MACS_A, 0.1)
        assert node.incarnation == INC + 1

    def test_every_alive_update_about_itself_carries_it(self):
        """A refutation and the push-pull view carry this member's meta."""
        node = group("b", "c")
        node.set_meta(MACS_A, 0.0)
        ticks(node, 0.2)
        sends = news(node, "b", Update(status=Status.SUSPECT, name="a", incarnation=INC + 1, source="b"), now=0.3)
        sends += node.tick(0.3)
        assert carrying(sends, alive("a", INC + 2, MACS_A))
        (sync,) = node.join(0.4, fanout=1)
        assert alive("a", INC + 2, MACS_A) in sync.packet.updates

    def test_received_meta_is_kept_and_replaced_only_by_a_newer_incarnation(self):
        """A member's meta comes with its alive update; an older incarnation's or a missing meta never replaces it."""
        node = group("b", "c")
        news(node, "c", alive("b", PEER + 1, MACS_B))
        assert node.metas() == {"b": MACS_B}
        news(node, "c", alive("b", PEER, MACS_A))
        news(node, "c", alive("b", PEER + 2, None))
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER + 3, source="c"))
        assert node.metas() == {"b": MACS_B} and node.members()["b"].meta == MACS_B

    def test_meta_arriving_after_its_incarnation_is_still_taken_and_passed_on(self):
        """Heard first-hand at a new incarnation, then its meta by gossip: the meta is taken and gossiped on."""
        node = group("b", "c")
        node.receive(0.0, packet("b", inc=PEER + 1))  # first-hand: the incarnation without the meta
        news(node, "c", alive("b", PEER + 1, MACS_B))
        assert node.metas() == {"b": MACS_B}
        assert carrying(ticks(node, 0.2), alive("b", PEER + 1, MACS_B))

    def test_a_relay_attaches_meta_only_for_the_incarnation_it_belongs_to(self):
        """Relaying a member's alive news at an incarnation whose meta it does not know, a member sends no meta."""
        node = group("b", "c")
        news(node, "c", alive("b", PEER + 1, MACS_B))
        news(node, "c", Update(status=Status.SUSPECT, name="b", incarnation=PEER + 1, source="c"))
        sends = news(node, "c", alive("b", PEER + 2, None), now=0.1) + ticks(node, 0.3)
        assert carrying(sends, alive("b", PEER + 2, None))
        assert not [u for s in sends for u in s.packet.updates if u.name == "b" and u.meta is not None]

    def test_push_pull_carries_the_metas_it_knows(self):
        """A sync view carries each member's meta known for its incarnation; the receiver takes them."""
        node = group("b", "c")
        news(node, "c", alive("b", PEER + 1, MACS_B))
        (sync,) = [s for s in node.join(0.0, fanout=2) if s.to == "c"]
        assert [(u.incarnation, u.meta) for u in sync.packet.updates if u.name == "b"] == [(PEER + 1, MACS_B)]
        other = group("a", "b", name="c")
        other.receive(0.0, sync.packet, transport=Transport.TCP)
        assert other.metas() == {"b": MACS_B}

    def test_down_members_keep_their_meta_and_forgotten_members_lose_it(self):
        """A dead member's MACs stay known (a returning speaker is ours); one Kubernetes drops is forgotten."""
        node = group("b", "c")
        news(node, "c", alive("b", PEER + 1, MACS_B))
        news(node, "c", Update(status=Status.DEAD, name="b", incarnation=PEER + 1, source="c"))
        assert node.status_of("b") == Status.DEAD and node.metas() == {"b": MACS_B}
        node.set_members(["a", "c"], 1.0)
        assert node.metas() == {}

    def test_meta_of_strangers_is_never_stored(self):
        """Gossip about a member Kubernetes does not name stores nothing, meta included."""
        node = group("b")
        news(node, "b", alive("mallory", 1, MACS_A))
        assert node.metas() == {}

    def test_meta_is_bounded(self):
        """A meta above MAX_META bytes is refused by set_meta and by the wire format, in one line."""
        node = group("b")
        with pytest.raises(ValueError, match=rf"^member meta .*: {MAX_META + 1} bytes, at most {MAX_META}$"):
            node.set_meta(bytes(MAX_META + 1), 0.0)
        with pytest.raises(WireError, match="at most"):
            encode(packet("b", updates=(alive("b", 1, bytes(MAX_META + 1)),)))
        raw = bytearray(encode(packet("b", updates=(alive("b", 1, b""),))))
        raw[-1] = MAX_META + 1  # the meta length byte, claiming more than allowed
        with pytest.raises(WireError, match="at most"):
            decode(bytes(raw) + bytes(MAX_META + 1))

    @settings(max_examples=100, deadline=None, derandomize=True, database=None)
    @given(st.lists(st.tuples(st.integers(PEER, PEER + 6), st.one_of(st.none(), st.binary(max_size=MAX_META))),
                    max_size=12))  # fmt: skip
    def test_the_meta_of_the_highest_incarnation_wins_in_any_order(self, news_items):
        """Whatever order alive updates arrive in, the meta kept is one carried at the highest incarnation."""
        node = group("b", "c")
        for inc, meta in news_items:
            news(node, "c", alive("b", inc, meta))
        carried = [(inc, meta) for inc, meta in news_items if meta is not None]
        if not carried:
            assert node.metas() == {}
        else:
            top = max(inc for inc, _ in carried)
            first = next(meta for inc, meta in carried if inc == top)
            assert node.metas() == {"b": first}
            assert len(node.metas()["b"]) <= MAX_META

    def test_a_member_back_at_a_new_incarnation_is_told_it_was_held_dead_and_steps_back(self):
        """A member held dead that comes back at a higher incarnation (its meta changed while it was cut off) is
        told it was held dead, and holds itself down as the others hold it down."""
        node = group("b", "c")
        news(node, "c", Update(status=Status.DEAD, name="b", incarnation=PEER, source="c"))
        sends = node.receive(1.0, packet("b", inc=PEER + 1))
        assert node.status_of("b") == Status.ALIVE and "b" not in node.live(1.0)  # held down here
        assert carrying(of(sends, Kind.GOSSIP), Update(status=Status.DEAD, name="b", incarnation=PEER, source="a"))
        returning = group("a", "c", name="b")
        returning.set_meta(MACS_B, 0.5)  # a new incarnation, while the others held it dead
        news(returning, "a", Update(status=Status.DEAD, name="b", incarnation=INC, source="a"), now=1.0)
        assert "b" not in returning.live(1.0)
        assert "b" in returning.live(1.0 + Params().hold_down)

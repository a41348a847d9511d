"""Where the bundled service keeps its leases and MAC pool across restarts.

:class:`AddressService` hands a :class:`State` snapshot to its store after
every change and reads it back at start. :class:`StateFile` is the JSON file
of ``--state-file`` (one replica); ``kube.KubeLeaseStore`` keeps them as
AddressLease objects (``--kube-leases``, several replicas). Other stores
implement :class:`LeaseStore`.
"""

from __future__ import annotations

import json
import os
from typing import Protocol

import attrs
from metallb.allocator.files import write_atomically
from metallb.plugins.address_service.api import Lease

__all__ = ["LeaseStore", "State", "StateFile"]


@attrs.frozen(kw_only=True)
class State:
    """What survives a restart.

    Attributes:
        leases: every lease, oldest first.
        macs: pool MACs not bound to a lease (including those an allocation in
            progress holds: a crash then must not lose them).
        retired: pool MACs removed while in use; they leave with their lease.
    """

    leases: tuple[Lease, ...] = ()
    macs: frozenset[str] = frozenset()
    retired: frozenset[str] = frozenset()


class LeaseStore(Protocol):
    """Persistence of a :class:`State`."""

    def load(self) -> State:
        """The state saved last, or an empty one."""
        ...

    def save(self, state: State) -> None:
        """Replace the saved state; called with the service's lock held, after every change.

        A store may skip what only a renewal changed (the times of a lease).
        An exception fails the change: a new lease that cannot be saved is
        released and the POST answered 503.
        """
        ...


class StateFile:
    """A JSON file, rewritten atomically (a crash leaves the old or the new file, never half of one).

    Args:
        path: the file; a missing folder is created at the first save.
    """

    VERSION = 1

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"StateFile({self.path!r})"

    def load(self) -> State:
        """Read the file; an absent file is an empty state."""
        if not os.path.exists(self.path):
            return State()
        with open(self.path, encoding="utf-8") as fh:
            data = json.load(fh)
        return State(
            leases=tuple(Lease.from_json(raw) for raw in data.get("leases", ())),
            macs=frozenset(data.get("macs", ())),
            retired=frozenset(data.get("retired", ())),
        )

    def save(self, state: State) -> None:
        """Replace the file with *state* (:func:`~metallb.allocator.files.write_atomically`)."""
        data = {
            "version": self.VERSION,
            "leases": [lease.to_json() for lease in state.leases],
            "macs": sorted(state.macs),
            "retired": sorted(state.retired),
        }
        write_atomically(self.path, json.dumps(data), prefix=".address-service-")

"""Kubernetes helpers that the operator and the plugins share: the API's timestamps and the leader Lease.

This is the allocator's only module that imports ``kubernetes`` (the
``operator`` extra); no other allocator module imports it, so
``import metallb.allocator`` never loads the Kubernetes client (setup.cfg's
contracts ``allocator-light`` and ``kube-helpers-apart``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

__all__ = ["LeaderLease", "now_rfc3339"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_rfc3339() -> str:
    """The current time as the API writes timestamps (microseconds, UTC)."""
    return dt.datetime.now(dt.UTC).strftime(_FORMAT)


class LeaderLease:
    """A ``coordination.k8s.io/v1`` Lease held by one process at a time.

    Expiry of another holder is judged on this process's monotonic clock, from
    the moment the holder's renewals stop changing the Lease, never by
    comparing clocks of different machines. A renewal keeps the Lease's
    ``acquireTime``.

    Args:
        api: the API client.
        namespace: where the Lease lives.
        name: the Lease's name.
        identity: this process (pod name, or host and pid).
        duration: seconds a holder's Lease lasts without renewal.
        renew: seconds between renewals.
        poll: seconds between tries while another holds the Lease (at most
            *renew*); by default ``duration / 8``.
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 5.0,
        poll: float | None = None,
    ) -> None:
        self.coord = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.renew = duration, renew
        self.poll = min(renew, duration / 8 if poll is None else poll)
        self.held = threading.Event()
        self.lost = threading.Event()
        self._seen: tuple[str, float] = ("", 0.0)  # (holder's renewTime, when we saw it change)

    def _body(self, resource_version: str | None = None, acquired: str = "") -> Obj:
        meta: Obj = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            meta["resourceVersion"] = resource_version
        now = now_rfc3339()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "renewTime": now,
            "acquireTime": acquired or now,
        }
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease."""
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace, _request_timeout=(2, 3))
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                self.coord.create_namespaced_lease(self.namespace, self._body(), _request_timeout=(2, 3))
                return True
            except ApiException as create_exc:
                if create_exc.status == 409:
                    return False
                raise
        spec = lease.spec
        holder = spec.holder_identity if spec else None
        renew_time = str(spec.renew_time) if spec and spec.renew_time else ""
        now = time.monotonic()
        if holder and holder != self.identity:
            if renew_time != self._seen[0]:
                self._seen = (renew_time, now)
                return False
            if now - self._seen[1] < self.duration:
                return False
            log.info("lease %s/%s held by %s expired; taking it over", self.namespace, self.name, holder)
        acquired = ""
        if holder == self.identity and spec and spec.acquire_time:
            acquired = spec.acquire_time.strftime(_FORMAT)
        try:
            self.coord.replace_namespaced_lease(
                self.name,
                self.namespace,
                self._body(lease.metadata.resource_version, acquired),
                _request_timeout=(2, 3),
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def run(self, stop: threading.Event) -> None:
        """Acquire, then renew until *stop*; sets :attr:`lost` when renewals fail for nearly a whole duration."""
        last_ok = 0.0
        while not stop.is_set():
            try:
                ok = self.try_acquire()
            except Exception as exc:  # noqa: BLE001 - API trouble: keep trying until the Lease runs out
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                ok = False
            now = time.monotonic()
            if ok:
                last_ok = now
                if not self.held.is_set():
                    log.info("acquired lease %s/%s as %s", self.namespace, self.name, self.identity)
                    self.held.set()
            elif self.held.is_set() and now - last_ok > self.duration - self.renew:
                # Stop before a contender may take over (it waits a whole duration).
                log.error("lost lease %s/%s: another holder may be active; stopping", self.namespace, self.name)
                self.lost.set()
                return
            # A standby looks more often than the holder renews: it takes over sooner after an expiry.
            stop.wait(self.renew if self.held.is_set() else self.poll)

    def release(self) -> None:
        """Give the Lease up on a clean exit, so a successor need not wait for it to expire."""
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace, _request_timeout=(3, 5))
            if lease.spec and lease.spec.holder_identity == self.identity:
                self.coord.delete_namespaced_lease(self.name, self.namespace, _request_timeout=(3, 5))
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.debug("releasing lease: %s", exc)

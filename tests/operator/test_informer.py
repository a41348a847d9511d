"""The informer's list-then-watch loop and the work queue, against the Kubernetes API emulator."""

from __future__ import annotations

import logging
import time

import pytest
from kubernetes import client
from metallb.allocator.testing import wait_for
from metallb.operator.informer import Informer, WorkQueue

NS = "default"
WATCHES = "watch=True"
LISTS = r"/configmaps(\?(?!.*watch=True)|$)"


def configmap(name: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": NS}}


@pytest.fixture(name="core")
def _core(kube):
    api = kube.api_client()
    yield client.CoreV1Api(api)
    api.close()


@pytest.fixture(name="informer")
def _informer(core):
    informers = []

    def start(**options):
        informer = Informer("configmaps", core.list_namespaced_config_map, lambda kind, obj: None, **options)
        informers.append(informer)
        return informer.start()

    yield start
    for informer in informers:
        informer.stop()


def watches_in(kube, seconds: float) -> int:
    """Watch requests served during the next *seconds*."""
    before = kube.request_count("GET", WATCHES)
    time.sleep(seconds)
    return kube.request_count("GET", WATCHES) - before


class TestShortWatches:
    """A watch the server ends at once is a failure: re-watched with a growing delay, never in a tight loop."""

    @pytest.mark.parametrize("abrupt", [False, True], ids=["empty-200", "connection-cut"])
    def test_bounded_then_resumes(self, kube, core, informer, abrupt):
        """Empty or cut watch streams make fewer than 10 watch requests in 3 s; clearing the fault resumes watching."""
        kube.faults.end_watches_at_once(True, abrupt=abrupt)
        watcher = informer(list_kwargs={"namespace": NS})
        wait_for(watcher.synced.is_set)
        watches = watches_in(kube, 3.0)
        print(f"watch requests in 3 s with every watch ended at once: {watches}")
        assert 2 <= watches < 10
        kube.faults.clear()
        core.create_namespaced_config_map(NS, configmap("after"))
        wait_for(lambda: f"{NS}/after" in watcher.cache, timeout=15, what="the watch resumed")
        assert watcher.relists == 1  # resumed from the listed resourceVersion, no relist

    def test_logged_once_per_streak(self, kube, core, informer, caplog):
        """One warning per streak of short watches; recovery is logged once; a new streak warns again."""
        caplog.set_level(logging.INFO, logger="metallb.operator.informer")
        kube.faults.end_watches_at_once(True)
        watcher = informer(list_kwargs={"namespace": NS})
        wait_for(lambda: kube.request_count("GET", WATCHES) >= 4, what="four short watches")
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "ended at once with no events" in warnings[0].getMessage()
        kube.faults.clear()
        core.create_namespaced_config_map(NS, configmap("a"))
        wait_for(lambda: f"{NS}/a" in watcher.cache, timeout=15)
        assert wait_for(lambda: [r for r in caplog.records if "watching again after" in r.getMessage()])
        kube.faults.end_watches_at_once(True)
        kube.close_all_watches()  # the healthy watch ends; the next one is short
        wait_for(lambda: len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2, what="a new streak")

    def test_healthy_watch_resets_the_delay(self, kube, core, informer):
        """After a watch that brought events, the next short watch is retried after the first delay again."""
        kube.faults.end_watches_at_once(True)
        watcher = informer(list_kwargs={"namespace": NS})
        wait_for(lambda: kube.request_count("GET", WATCHES) >= 5, what="five short watches")  # delay now ~3 s
        kube.faults.clear()
        core.create_namespaced_config_map(NS, configmap("a"))
        wait_for(lambda: f"{NS}/a" in watcher.cache, timeout=15)
        kube.faults.end_watches_at_once(True)
        kube.close_all_watches()
        assert watches_in(kube, 0.8) >= 2  # 0.2 s, then 0.4 s: the backoff started over

    def test_expired_right_after_a_list_backs_off(self, kube, core, informer):
        """A 410 on the watch that follows a fresh list relists with backoff, not in a loop."""
        kube.faults.expire_resume(True)
        informer(list_kwargs={"namespace": NS})
        wait_for(lambda: kube.request_count("GET", WATCHES) >= 1)
        before = kube.request_count("GET", LISTS)
        time.sleep(3.0)
        assert kube.request_count("GET", LISTS) - before < 10

    def test_expiry_of_a_resumed_watch_relists_at_once(self, kube, core, informer):
        """A watch resumed from a compacted resourceVersion gets 410 and lists again without delay."""
        kube.faults.end_watches_at_once(True)  # hold the informer at its listed resourceVersion
        watcher = informer(list_kwargs={"namespace": NS})
        wait_for(watcher.synced.is_set)
        core.create_namespaced_config_map(NS, configmap("a"))
        kube.compact()
        kube.faults.clear()
        wait_for(lambda: f"{NS}/a" in watcher.cache, timeout=15)
        assert watcher.relists == 2

    def test_watch_ended_by_its_timeout_is_healthy(self, kube, core, informer):
        """A watch that lasted its timeoutSeconds without events is watched again at once (no backoff)."""
        watcher = informer(list_kwargs={"namespace": NS}, watch_timeout=1)
        wait_for(lambda: kube.request_count("GET", WATCHES) >= 3, timeout=6, what="three 1 s watches")
        core.create_namespaced_config_map(NS, configmap("a"))
        wait_for(lambda: f"{NS}/a" in watcher.cache, timeout=2)


class TestWorkQueueRetry:
    """Failed keys come back after the shared Backoff's delays; success starts them over."""

    def test_delays_grow_and_forget_resets(self):
        """Per-key delays double from the base up to the cap (with ±20 % jitter); forget() restarts them."""
        queue = WorkQueue()
        delays = [queue.retry("a", base=0.01, cap=0.04) for _ in range(4)]
        for delay, expected in zip(delays, (0.01, 0.02, 0.04, 0.04), strict=True):
            assert expected * 0.8 <= delay <= expected * 1.2
        queue.forget("a")
        assert queue.retry("a", base=0.01, cap=0.04) <= 0.012
        assert queue.get(timeout=1) == "a"

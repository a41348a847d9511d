"""The speaker against an API server whose watches end at once: it backs off, then resumes."""

from __future__ import annotations

import time

import pytest
from metallb.allocator.testing import wait_for
from metallb.operator.speaker import Speaker

NS = "metallb-system"
CONFIG = "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n"


@pytest.fixture(name="speaker")
def _speaker(kube):
    if kube.get("namespaces", None, NS) is None:
        kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kube.add_resource("metallb.io", "v1beta1", "servicel2statuses", "ServiceL2Status", status=True)
    speaker = Speaker(kube.api_client(), node_name="n1", namespace=NS, watch_timeout=5)
    yield speaker
    speaker.stop()


class TestSpeakerWatches:
    @pytest.mark.parametrize("abrupt", [False, True], ids=["empty-200", "connection-cut"])
    def test_watches_ended_at_once_back_off(self, kube, speaker, abrupt):
        """Nine watching informers make fewer than 70 watch requests in 3 s while every watch ends at once; then resume.

        (services, endpoint slices, ServiceL2Statuses, the kubelets' node Leases and the speakers' MAC
        Leases (no memberlist key: node liveness), the ConfigMap, Secrets, Nodes, Namespaces; the configuration's custom
        resources' informers list every 30 s while their CRDs are not installed, without watching.)
        """
        kube.faults.end_watches_at_once(True, abrupt=abrupt)
        speaker.start()
        wait_for(speaker.ready)
        before = kube.request_count("GET", "watch=True")
        time.sleep(3.0)
        watches = kube.request_count("GET", "watch=True") - before
        print(f"speaker watch requests in 3 s, every watch ended at once: {watches}")
        assert watches < 70  # nine informers, each about 0.2, 0.4, 0.8, 1.6 s apart
        assert speaker.config is None
        kube.faults.clear()
        kube.put_object(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": NS},
                "data": {"config": CONFIG},
            }
        )
        wait_for(lambda: speaker.config is not None, timeout=15, what="the config, through the resumed watch")
        assert list(speaker.config.pools) == ["l2"]

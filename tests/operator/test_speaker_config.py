"""The speaker's config handling: bad or orphaning configs keep the last good one."""

from __future__ import annotations

import netaddr
from metallb.allocator import ServiceView, parse_config
from metallb.operator.speaker import Speaker

GOOD = "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n"


def cm(text: str | None) -> dict:
    data = {} if text is None else {"config": text}
    return {"metadata": {"name": "config", "namespace": "metallb-system"}, "data": data}


def load(speaker: Speaker, text: str | None) -> None:
    """Hand the speaker the ConfigMap *text* as its configuration watch would, through the watch's own loader."""
    speaker.config_watch.configmaps.cache = {"metallb-system/config": cm(text)}
    speaker._on_config(speaker.config_watch.load())


class TestSpeakerConfig:
    def test_missing_key_and_bad_yaml_keep_the_last_good_config(self, kube):
        """A ConfigMap without "config", or with broken YAML, is not applied."""
        speaker = Speaker(kube.api_client(), node_name="n1")
        load(speaker, GOOD)
        good = speaker.config
        assert good is not None and list(good.pools) == ["l2"]
        load(speaker, None)
        assert speaker.config is good
        load(speaker, "address-pools: [oops")
        assert speaker.config is good

    def test_config_orphaning_an_announced_address_is_rejected(self, kube):
        """A config without a pool for an address this speaker announces is stale, as in MetalLB."""
        speaker = Speaker(kube.api_client(), node_name="n1")
        load(speaker, GOOD)
        pool = speaker.config.pools["l2"]
        view = ServiceView(key="ns/a", ips=(netaddr.IPAddress("192.0.2.5"),), pool=pool)
        speaker.announcements._pairs[("ns/a", "layer2")] = view
        load(speaker, "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [198.51.100.0/28]\n")
        assert list(speaker.config.pools["l2"].cidrs) == list(parse_config(GOOD).pools["l2"].cidrs)

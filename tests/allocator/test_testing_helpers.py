"""metallb.allocator.testing: the helpers plugin authors import (the contract check: test_contract.py)."""

from __future__ import annotations

import threading

import httpx
import pytest
from metallb.allocator import ConfigError, parse_config
from metallb.allocator.testing import (
    JsonApiStub,
    allocator_for,
    builtin_protocol_plugins,
    plugin_manager_with,
)
from metallb.plugins import static_pool

POOL = "address-pools:\n- name: p\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n"


def static_factory(text: str = POOL, name: str = "p"):
    spec = parse_config(text, plugin_manager=plugin_manager_with(static_pool)).pools[name]
    return lambda: static_pool.StaticSource(spec)


class TestPluginManagers:
    def test_only_the_named_plugins(self):
        """plugin_manager_with registers the plugins given and metallb's protocols, no other entry point."""
        pm = plugin_manager_with(static_pool)
        assert [p for _, p in pm.list_name_plugin()] == [*builtin_protocol_plugins(), static_pool]
        assert {p.__name__ for p in builtin_protocol_plugins()} == {  # type: ignore[attr-defined]
            "metallb.announcers.layer2.plugin",
            "metallb.announcers.bgp.plugin",
        }

    def test_without_protocols(self):
        """protocols=False leaves metallb's protocols out: a pool's protocol is then unknown."""
        pm = plugin_manager_with(static_pool, protocols=False)
        assert [p for _, p in pm.list_name_plugin()] == [static_pool]
        with pytest.raises(
            ConfigError, match='value "layer2": unknown protocol: no announcement protocol is installed'
        ):
            allocator_for(POOL, static_pool, protocols=False)

    def test_with_entry_points_does_not_register_twice(self):
        """A plugin also loaded through its entry point is registered once."""
        pm = plugin_manager_with(static_pool, entry_points=True)
        assert sum(1 for _, p in pm.list_name_plugin() if p is static_pool) == 1

    def test_allocator_for_parses_with_those_plugins(self):
        """allocator_for builds an Allocator over the config, and sections of absent plugins are errors."""
        alloc = allocator_for(POOL, static_pool)
        assert str(alloc.allocate("ns/a")) == "192.0.2.0"
        with pytest.raises(ConfigError, match='unknown top-level key "address-pools"'):
            allocator_for(POOL)


class TestJsonApiStub:
    def test_routes_params_and_request_log(self):
        """A route answers with its handler's JSON; named groups and the body reach the handler."""
        with JsonApiStub() as api:
            api.add("POST", r"/items/(?P<id>\d+)/", lambda r: (201, {"id": int(r.params["id"]), "got": r.body}))
            response = httpx.post(f"{api.url}/items/7/?x=1", json={"a": 1}, headers={"X-Token": "t"})
            assert response.status_code == 201
            assert response.json() == {"id": 7, "got": {"a": 1}}
            (request,) = api.requests
            assert request.query == {"x": "1"} and request.headers["x-token"] == "t"
            assert api.url.startswith("http://127.0.0.1:")

    def test_unmatched_is_404_and_a_raising_handler_is_500(self):
        """Unknown paths get 404; a handler exception becomes a 500 naming it."""
        with JsonApiStub() as api:

            @api.route("GET", "/boom")
            def boom(request):
                raise ValueError("nope")

            assert httpx.get(f"{api.url}/nothing").status_code == 404
            failed = httpx.get(f"{api.url}/boom")
            assert failed.status_code == 500 and "ValueError: nope" in failed.json()["detail"]

    def test_no_body_and_concurrent_requests(self):
        """None answers with an empty body; requests are served from several threads."""
        with JsonApiStub() as api:
            api.add("DELETE", r"/x/\d+", lambda r: (204, None))
            with httpx.Client(base_url=api.url) as client:
                results = []
                threads = [
                    threading.Thread(target=lambda i=i: results.append(client.delete(f"/x/{i}").status_code))
                    for i in range(8)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            assert results == [204] * 8

    def test_stop_frees_the_port(self):
        """After stop, the URL is gone and connecting fails."""
        api = JsonApiStub().start()
        url = api.url
        api.stop()
        api.stop()
        with pytest.raises(RuntimeError):
            _ = api.url
        with pytest.raises(httpx.ConnectError):
            httpx.get(url)

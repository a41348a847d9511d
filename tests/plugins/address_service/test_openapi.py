"""docs/address-service.openapi.yaml: a valid OpenAPI 3.1 description, and our server answers as it says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

SPEC_PATH = Path(__file__).resolve().parents[3] / "docs" / "address-service.openapi.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def check(spec: dict[str, Any], method: str, path: str, resp: httpx.Response) -> None:
    """*resp*'s code is documented for the operation and its body matches that response's schema."""
    responses = spec["paths"][path][method.lower()]["responses"]
    assert str(resp.status_code) in responses, f"{method} {path}: HTTP {resp.status_code} is not documented"
    documented = responses[str(resp.status_code)]
    if "$ref" in documented:
        documented = spec["components"]["responses"][documented["$ref"].rpartition("/")[2]]
    content = documented.get("content")
    if content is None:
        assert resp.content == b"", f"{method} {path}: {resp.status_code} documents no body"
        return
    media = resp.headers["content-type"].partition(";")[0]
    assert media in content, f"{method} {path}: {media} is not documented for {resp.status_code}"
    schema = {**content[media]["schema"], "components": spec["components"]}
    body = resp.json() if media == "application/json" else resp.text
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)


class TestDescription:
    """The project's copy of the protocol description."""

    def test_is_valid_openapi(self, spec) -> None:
        """It passes openapi-spec-validator and documents the family extension on POST /v1/ip."""
        validate(spec)
        request = spec["components"]["schemas"]["ObtainIPRequest"]["properties"]
        assert request["family"]["enum"] == [4, 6] and request["family"]["x-metallb"] == "implemented"

    def test_lists_every_extension_the_server_speaks(self, spec) -> None:
        """The extensions enum in ConfigResponse is exactly wire.EXTENSIONS."""
        from metallb.plugins.address_service.wire import EXTENSIONS

        enum = spec["components"]["schemas"]["ConfigResponse"]["properties"]["extensions"]["items"]["enum"]
        assert sorted(enum) == sorted(EXTENSIONS)


class TestServerAnswers:
    """Our server's answers on the main routes match the description, code and body."""

    def test_ip_routes(self, spec, make_bundled) -> None:
        """POST and DELETE /v1/ip: new lease, replay, IPv6 by family, errors."""
        server = make_bundled(cidrs=("192.0.2.0/30", "2001:db8:5::/126"))
        server.service.derive_macs = True
        with httpx.Client(base_url=server.url) as http:
            answers = [
                ("POST", http.post("/v1/ip", json={"service": "ns/a"})),
                ("POST", http.post("/v1/ip", json={"service": "ns/a"})),
                ("POST", http.post("/v1/ip", json={"service": "ns/a", "family": 6})),
                ("POST", http.post("/v1/ip", json={"service": "ns/b", "ip": "192.0.2.1"})),
                ("POST", http.post("/v1/ip", json={"service": "ns/c"})),
                ("POST", http.post("/v1/ip", json={"service": "ns/d"})),
                ("POST", http.post("/v1/ip", json={"service": "ns/e", "family": 5})),
                ("POST", http.post("/v1/ip", content=b"not json")),
                ("DELETE", http.request("DELETE", "/v1/ip", json={"ip": "192.0.2.1", "service": "ns/x"})),
                ("DELETE", http.request("DELETE", "/v1/ip", json={"ip": "192.0.2.1"})),
                ("DELETE", http.request("DELETE", "/v1/ip", json={"ip": "192.0.2.1"})),
                ("DELETE", http.request("DELETE", "/v1/ip", json={"ip": 5})),
                ("GET", http.get("/v1/ip")),
            ]
        codes = [r.status_code for _, r in answers]
        assert codes == [201, 200, 201, 409, 201, 503, 400, 400, 409, 200, 404, 400, 405]
        for method, resp in answers:
            # GET is no operation of /v1/ip: its 405 (empty body) is documented on POST and DELETE.
            check(spec, "POST" if method == "GET" else method, "/v1/ip", resp)
        assert answers[2][1].json()["ip"] == "2001:db8:5::1"

    def test_status_config_macs_and_health(self, spec, make_bundled) -> None:
        """GET /v1/status and /v1/config, POST and DELETE /v1/mac, /healthz and /readyz."""
        server = make_bundled(cidrs=("192.0.2.0/24", "2001:db8:5::/120"))
        with httpx.Client(base_url=server.url) as http:
            check(spec, "GET", "/v1/status", http.get("/v1/status"))
            http.post("/v1/ip", json={"service": "ns/a"})
            http.post("/v1/ip", json={"service": "ns/a", "family": 6})
            check(spec, "GET", "/v1/status", http.get("/v1/status"))
            check(spec, "GET", "/v1/config", http.get("/v1/config"))
            check(spec, "POST", "/v1/mac", http.post("/v1/mac", json={"macs": ["02:00:5e:10:00:01", "x"]}))
            check(spec, "POST", "/v1/mac", http.post("/v1/mac", json={"macs": ["x"]}))
            check(spec, "DELETE", "/v1/mac", http.request("DELETE", "/v1/mac", json={"macs": ["02:00:5e:10:00:01"]}))
            check(spec, "GET", "/healthz", http.get("/healthz"))
            check(spec, "GET", "/readyz", http.get("/readyz"))
            server.service.started, server.service.deferred_start = False, True  # a replica that does not lead
            check(spec, "GET", "/readyz", http.get("/readyz"))
            check(spec, "GET", "/v1/status", http.get("/v1/status"))
            check(spec, "DELETE", "/v1/ip", http.request("DELETE", "/v1/ip", json={"ip": "192.0.2.1"}))
            server.service.started, server.service.deferred_start = True, False

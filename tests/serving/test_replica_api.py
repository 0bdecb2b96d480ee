"""The gateway's replica API (serving/replica_api.py) on the platform as `blacksoil up` runs it with tenant API keys:
the admin key is required (no key and tenant keys are refused), bad bodies are 400s in the one error shape, and a
real second engine joins the pool, is found again on a resent registration, and leaves it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from blacksoil.config import load_settings
from blacksoil.distributed import free_port
from blacksoil.platform import running_platform
from blacksoil.serving.engine import LlamaCppEngine
from blacksoil.serving.launch import GatewayHandle
from blacksoil.serving.models import default_model_path

from .conftest import KEY, small_config

ADMIN = "replica-admin-key-0123456789"
URL = "/v1/replicas"


@pytest.fixture(scope="module")
def admin_gw() -> Iterator[GatewayHandle]:
    """The platform with tenant `acme`'s API key and an admin key for the replica API."""
    s = load_settings(serving=small_config(admin_key=ADMIN).model_dump(), platform={"api_keys": {KEY: "acme"}})
    with running_platform(s) as gw:
        yield gw


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    """A second real llama.cpp engine (its own process, its own key), as a serving pod would run one."""
    e = LlamaCppEngine(default_model_path(), slots=2, ctx=2048, threads=1)
    e.start()
    yield e
    e.stop()


def call(gw: GatewayHandle, method: str, path: str = URL, key: str | None = ADMIN, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, gw.url + path, headers=headers, timeout=60, **kw)


def error_of(r: httpx.Response) -> dict[str, Any]:
    """The error of an answer, which must be the one shape: {"error": {message, type, code, param}}."""
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code", "param"}
    return dict(err)


@pytest.mark.parametrize("method,path", [("GET", URL), ("POST", URL), ("DELETE", URL + "/r0")])
def test_no_key_is_refused(admin_gw: GatewayHandle, method: str, path: str) -> None:
    r = call(admin_gw, method, path, key=None, json={"api_base": "http://127.0.0.1:1/v1", "api_key": "k"})
    assert r.status_code == 401
    assert error_of(r)["type"] == "authentication_error"


@pytest.mark.parametrize("method,path", [("GET", URL), ("POST", URL), ("DELETE", URL + "/r0")])
def test_a_tenant_key_is_refused(admin_gw: GatewayHandle, method: str, path: str) -> None:
    before = [i.name for i in admin_gw.pool.info()]
    r = call(admin_gw, method, path, key=KEY, json={"api_base": "http://127.0.0.1:1/v1", "api_key": "k"})
    assert r.status_code == 403
    assert error_of(r)["type"] == "permission_error"
    assert [i.name for i in admin_gw.pool.info()] == before


def test_a_wrong_key_is_refused(admin_gw: GatewayHandle) -> None:
    r = call(admin_gw, "GET", key=ADMIN + "x")
    assert r.status_code == 403


def test_tenant_routes_still_refuse_the_admin_key(admin_gw: GatewayHandle) -> None:
    r = call(admin_gw, "POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401  # the admin key is not a tenant's: it opens the replica API only


@pytest.mark.parametrize("body,param", [
    ({"api_key": "k"}, "api_base"),
    ({"api_base": "file:///etc/passwd", "api_key": "k"}, "api_base"),
    ({"api_base": "http://10.0.0.1/v1", "api_key": "k"}, "api_base"),  # no port
    ({"api_base": "http://10.0.0.1:8080/v1", "api_key": ""}, "api_key"),
    ({"api_base": "http://10.0.0.1:8080/v1", "api_key": "k", "slots": 0}, "slots"),
    ({"api_base": "http://10.0.0.1:8080/v1", "api_key": "k", "lora": "x"}, "lora"),
])
def test_bad_bodies_are_400_naming_the_field(admin_gw: GatewayHandle, body: dict[str, Any], param: str) -> None:
    r = call(admin_gw, "POST", json=body)
    assert r.status_code == 400
    assert error_of(r)["param"] == param


def test_an_engine_that_does_not_answer_is_not_added(admin_gw: GatewayHandle) -> None:
    before = [i.name for i in admin_gw.pool.info()]
    r = call(admin_gw, "POST", json={"api_base": f"http://127.0.0.1:{free_port()}/v1", "api_key": "k"})
    assert r.status_code == 503
    assert error_of(r)["type"] == "server_unavailable"
    assert [i.name for i in admin_gw.pool.info()] == before


def test_an_engine_refusing_the_key_is_not_added(admin_gw: GatewayHandle, engine: LlamaCppEngine) -> None:
    r = call(admin_gw, "POST", json={"api_base": engine.api_base, "api_key": "not-its-key"})
    assert r.status_code == 400
    assert error_of(r)["param"] == "api_key"


def test_the_gateways_own_engine_cannot_be_removed(admin_gw: GatewayHandle) -> None:
    own = admin_gw.pool.info()[0].name
    r = call(admin_gw, "DELETE", f"{URL}/{own}")
    assert r.status_code == 404
    assert own in [i.name for i in admin_gw.pool.info()]


def test_an_engine_joins_and_leaves_the_pool(admin_gw: GatewayHandle, engine: LlamaCppEngine) -> None:
    body = {"api_base": engine.api_base, "api_key": engine.api_key, "slots": 2, "owner": "default/chat"}
    r = call(admin_gw, "POST", json=body)
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    assert {(i.name, i.status, i.kind) for i in admin_gw.pool.info()} >= {(name, "ready", "llamacpp_remote")}

    again = call(admin_gw, "POST", json=body)  # a retried registration finds the first one's replica
    assert (again.status_code, again.json()["name"]) == (200, name)

    listed = {r["name"]: r for r in call(admin_gw, "GET").json()["data"]}
    assert (listed[name]["owner"], listed[name]["api_base"]) == ("default/chat", engine.api_base)
    assert "api_key" not in listed[name]

    r = call(admin_gw, "DELETE", f"{URL}/{name}")
    assert r.json() == {"name": name, "status": "removed"}
    assert name not in [i.name for i in admin_gw.pool.info()]
    assert call(admin_gw, "DELETE", f"{URL}/{name}").status_code == 404


def test_without_an_admin_key_the_api_is_off(gw: GatewayHandle) -> None:
    r = call(gw, "GET")
    assert r.status_code == 404
    assert "serving.admin_key" in error_of(r)["message"]

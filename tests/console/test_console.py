"""The console end to end in headless Chromium: the real platform (engine, gateway, store, agents) on loopback.

Each view is opened in the browser and what it shows is compared with the platform's own API; a pending
tool call is approved from the page; a second tenant's key sees none of the first tenant's data.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from blacksoil.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` points this at docs/img (the README's pictures); a plain test run keeps the tree clean.
SHOTS = Path(os.environ.get("BLACKSOIL_CONSOLE_SHOTS") or tempfile.mkdtemp(prefix="console-shots-"))
KEY_PLANT = "plant-key-0123456789abcdef"
KEY_OTHER = "other-key-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
VIEWS = ("serving", "agents", "experience", "learning", "scheduling", "agentscore")


def _ensure_chromium() -> None:
    """Chromium is provisioned by tools/system-deps.sh before the session; say so plainly if it is not."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `sudo apt-get install -y chromium` (or `make system-deps`)")


@pytest.fixture(scope="module")
def platform_settings(blacksoil_home: Path) -> Settings:
    """The platform's settings, resolved once: tenants by API key; its agents (and the console's resumed runs)
    authenticate as the plant tenant."""
    return load_settings(platform={"api_keys": {KEY_PLANT: "plant", KEY_OTHER: "other"}},
                         agents={"api_key": KEY_PLANT})


@pytest.fixture(scope="module")
def platform(platform_settings: Settings) -> Iterator[Any]:
    """The platform as `blacksoil up --learner` runs it: the experience store as the gateway's sink."""
    from blacksoil.platform import make_sink, running_platform

    s = platform_settings
    sink = make_sink(s)
    try:
        with running_platform(s, sink=sink) as gw:
            yield gw
    finally:
        sink.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


def _api(gw: Any, view: str, key: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/v1/console/{view}", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _open(browser: Any, gw: Any, view: str, key: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{gw.url}/console?key={key}#{view}")
    page.wait_for_selector(f"body[data-ready='{view}']", timeout=60_000)
    return page


def _card(page: Any, cid: str) -> str:
    return str(page.inner_text(f"[data-metric='{cid}'] .value"))


def _fmt(v: Any) -> str:
    """What console.js shows for a value (en-US grouping, at most 3 decimals, en dash for none)."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.3f}".rstrip("0").rstrip(".")


@pytest.fixture(scope="module")
def paused_run(platform: Any, platform_settings: Settings) -> Any:
    """A real agent run (default model through the gateway) that pauses on a call needing approval."""
    from blacksoil.agents.launcher import RuntimeSetup, open_runtime
    from blacksoil.agents.spec import load_team
    from blacksoil.experience.sink import make_sink

    team = load_team(ROOT / "examples" / "agents" / "maintenance_approval.yaml")
    with open_runtime(team, RuntimeSetup.from_settings(platform_settings), base_url=platform.openai_base_url,
                      model=platform.model, new_sink=lambda: make_sink(platform_settings)) as rt:
        result = rt.run("Open a low priority inspection maintenance order for machine M1.")
    assert result.status == "paused", result
    assert result.pending, result
    return result


def test_auth_is_required_and_keys_pick_the_tenant(platform: Any) -> None:
    assert httpx.get(f"{platform.url}/v1/console/serving", timeout=30).status_code == 401
    bad = httpx.get(f"{platform.url}/v1/console/serving", headers={"Authorization": "Bearer nope-nope-nope-nope"},
                    timeout=30)
    assert bad.status_code == 401
    assert bad.json()["error"]["type"] == "authentication_error"
    assert _api(platform, "serving", KEY_PLANT)["tenant"] == "plant"
    # A client cannot pick another tenant with the header once keys are configured.
    r = httpx.get(f"{platform.url}/v1/console/serving",
                  headers={"Authorization": f"Bearer {KEY_OTHER}", "X-Tenant": "plant"}, timeout=30)
    assert r.json()["tenant"] == "other"


def test_console_routes_are_in_the_openapi_schema(platform: Any) -> None:
    spec = httpx.get(f"{platform.url}/openapi.json", timeout=30).json()
    assert "/v1/console/{view}" in spec["paths"]
    assert "/v1/feedback" in spec["paths"]


def test_serving_view_shows_live_metrics(platform: Any, browser: Any) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=platform.openai_base_url, api_key=KEY_PLANT)
    for i in range(3):
        client.chat.completions.create(model=platform.model, max_tokens=8, stream=True,
                                       messages=[{"role": "user", "content": f"Say hello {i}"}],
                                       extra_headers={"X-Session-Id": "console-s1"}).response.read()
    sampler = platform.app.state.console.sampler
    sampler.tick()
    sampler.tick()
    data = _api(platform, "serving", KEY_PLANT)
    page = _open(browser, platform, "serving", KEY_PLANT)
    cards = {c["id"]: c["value"] for c in data["cards"]}
    assert _card(page, "replicas") == _fmt(cards["replicas"]) == "1"
    assert _card(page, "served_versions") == cards["served_versions"]
    assert page.locator("[data-chart='ttft'] canvas").count() == 1
    assert page.locator("[data-table='replicas'] tr").count() == 2  # header + one replica
    page.screenshot(path=str(SHOTS / "console_serving.png"), full_page=True)
    page.close()


def test_agents_view_approves_from_the_page_and_isolates_tenants(platform: Any, browser: Any, paused_run: Any,
                                                                  platform_settings: Settings) -> None:
    call_id = paused_run.pending[0].call_id
    data = _api(platform, "agents", KEY_PLANT)
    cards = {c["id"]: c["value"] for c in data["cards"]}
    assert cards["pending"] >= 1
    page = _open(browser, platform, "agents", KEY_PLANT)
    assert _card(page, "pending") == _fmt(cards["pending"])
    assert paused_run.run_id in page.inner_text("[data-table='runs']")
    assert "approval" in page.inner_text("[data-table='audit']")
    page.screenshot(path=str(SHOTS / "console_agents.png"), full_page=True)
    row = page.locator("[data-table='pending'] tr", has_text=call_id)
    row.locator("button[data-action='approve']").click()
    page.wait_for_function("document.getElementById('status').textContent.startsWith('approved')", timeout=30_000)
    page.close()
    from blacksoil.agents.launcher import RuntimeSetup, run_store

    # The console resumes the run in the background: the approved call then executes.
    deadline = time.monotonic() + 180
    status = "awaiting_approval"
    while time.monotonic() < deadline:
        store = run_store(RuntimeSetup.from_settings(platform_settings))
        try:
            call = store.get_call(paused_run.run_id, call_id)
        finally:
            store.close()
        assert call is not None
        status = call.status
        if status not in ("awaiting_approval", "approved", "started"):
            break
        time.sleep(1)
    assert status == "completed", status
    other = _api(platform, "agents", KEY_OTHER)
    assert all(r[0] != paused_run.run_id for t in other["tables"] for r in t["rows"])
    assert {c["id"]: c["value"] for c in other["cards"]}["runs"] == 0


def test_experience_view_counts_match_the_store(platform: Any, browser: Any) -> None:
    from openai import OpenAI

    OpenAI(base_url=platform.openai_base_url, api_key=KEY_PLANT).chat.completions.create(
        model=platform.model, max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    data = _api(platform, "experience", KEY_PLANT)
    cards = {c["id"]: c["value"] for c in data["cards"]}
    assert cards["model_calls"] >= 1
    page = _open(browser, platform, "experience", KEY_PLANT)
    assert _card(page, "model_calls") == _fmt(cards["model_calls"])
    page.screenshot(path=str(SHOTS / "console_experience.png"), full_page=True)
    page.close()
    other = {c["id"]: c["value"] for c in _api(platform, "experience", KEY_OTHER)["cards"]}
    assert other["model_calls"] == 0


@pytest.fixture(scope="module")
def finished_runs(blacksoil_home: Path) -> None:
    """A real (small) simulator run and a real AgentScore run stored where the console reads them."""
    from typer.testing import CliRunner

    from blacksoil.cli import app
    from blacksoil.config import settings
    from blacksoil.scheduling.runs import save_sim_run
    from blacksoil.scheduling.simulator import build_scenario, simulate

    sc = build_scenario(64, 2.0, settings().scheduling)
    save_sim_run(blacksoil_home, [simulate(sc, p) for p in ("static", "unified")], accelerators=64, hours=2.0)
    res = CliRunner().invoke(app, ["score", "--agent", "oracle", "--suite", "tools-basic", "--split", "dev"])
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def learning_round(platform: Any, platform_settings: Settings) -> Any:
    """One real, tiny learning round on the running platform (collect → train → publish → gate)."""
    import dataclasses

    from blacksoil.learning.context import LearnerContext
    from blacksoil.learning.loop import Learner, LoopOptions

    ctx = LearnerContext.from_settings(platform_settings).with_learning(batch_size=1, max_seq_len=512)
    ctx = dataclasses.replace(ctx, agentscore=ctx.agentscore.model_copy(update={"step_budget": 2}))
    learner = Learner(platform, platform.sink.store, LoopOptions(suites=("tools-basic",), attempts=1, tasks_per_suite=1,
                                                           gate_tasks=1, steps=2), ctx)
    return learner.run_round(1)


def test_learning_view_shows_the_round(platform: Any, browser: Any, learning_round: Any) -> None:
    data = _api(platform, "learning", KEY_PLANT)
    cards = {c["id"]: c["value"] for c in data["cards"]}
    assert cards["rounds"] == 1 and cards["versions"] >= 1
    rounds = next(t for t in data["tables"] if t["id"] == "rounds")
    assert rounds["rows"][0][6] == learning_round.candidate
    page = _open(browser, platform, "learning", KEY_PLANT)
    assert _card(page, "rounds") == "1"
    assert learning_round.candidate in page.inner_text("[data-table='versions']")
    page.screenshot(path=str(SHOTS / "console_learning.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("view", ["scheduling", "agentscore"])
def test_other_views_render(platform: Any, browser: Any, finished_runs: None, view: str) -> None:
    data = _api(platform, view, KEY_PLANT)
    if view in ("scheduling", "agentscore"):  # populated by finished_runs: charts and their rows must show
        assert data["charts"], data
        for t in data["tables"][:1]:
            assert t["rows"], t
    page = _open(browser, platform, view, KEY_PLANT)
    assert data["cards"], f"the {view} view shows no headline numbers"
    for c in data["cards"]:
        assert _card(page, c["id"]) == _fmt(c["value"]), c
    for c in data["charts"]:
        assert page.locator(f"[data-chart='{c['id']}'] canvas").count() == 1
    page.screenshot(path=str(SHOTS / f"console_{view}.png"), full_page=True)
    page.close()

"""A promotion outlives a restart: the platform starts on the latest promoted adapter, `--adapter` pins one or the
base model, and /health says which version answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from blacksoil.config import Settings, load_settings
from blacksoil.contracts import AdapterVersion
from blacksoil.errors import NotFoundError
from blacksoil.learning.adapters import AdapterStore
from blacksoil.learning.basemodel import info_from_gguf
from blacksoil.learning.randomlora import write_random_peft
from blacksoil.platform import resolve_adapter, running_platform
from blacksoil.serving.models import DEFAULT_MODEL_NAME


@pytest.fixture(scope="module")
def home_with_promotion(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, AdapterVersion]:
    """A home whose adapter store holds v1 (promoted, then superseded) and v2 (promoted) and v3 (rejected)."""
    home = tmp_path_factory.mktemp("promo-home")
    s = load_settings(home=str(home))
    info = info_from_gguf()
    store = AdapterStore(home, DEFAULT_MODEL_NAME)
    published = [store.publish(write_random_peft(home / f"peft{i}", info, b_std=0.002, seed=i), info)
                 for i in (1, 2, 3)]
    store.set_status(published[0].version, "promoted")
    store.set_status(published[1].version, "promoted")
    store.set_status(published[2].version, "rejected")
    return s, store.get(published[1].version)


def test_default_is_the_latest_promoted_version(home_with_promotion: tuple[Settings, AdapterVersion]) -> None:
    s, promoted = home_with_promotion
    chosen = resolve_adapter(s, None)
    assert chosen is not None and chosen.version == promoted.version


def test_base_pins_the_base_model(home_with_promotion: tuple[Settings, AdapterVersion]) -> None:
    assert resolve_adapter(home_with_promotion[0], "base") is None


def test_a_version_pins_that_version(home_with_promotion: tuple[Settings, AdapterVersion]) -> None:
    chosen = resolve_adapter(home_with_promotion[0], "v1")
    assert chosen is not None and chosen.version == "v1"


def test_an_unknown_version_names_the_known_ones(home_with_promotion: tuple[Settings, AdapterVersion]) -> None:
    with pytest.raises(NotFoundError, match=r"v7.*known: v1, v2, v3"):
        resolve_adapter(home_with_promotion[0], "v7")


def test_a_home_without_promotions_serves_base(tmp_path: Path) -> None:
    assert resolve_adapter(load_settings(home=str(tmp_path)), None) is None


def test_a_restarted_platform_serves_the_promoted_version(home_with_promotion: tuple[Settings, AdapterVersion]) -> None:
    s, promoted = home_with_promotion
    with running_platform(s, adapter=resolve_adapter(s, None)) as gw:
        health = httpx.get(gw.url + "/health", timeout=30).json()
    assert health["adapter_versions"] == [promoted.version]

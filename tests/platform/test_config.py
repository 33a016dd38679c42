"""Settings and the tenant catalogue reject bad values with messages that name the field and source."""

from __future__ import annotations

from pathlib import Path

import pytest
from jubao_server.app import load_settings
from jubao_server.config import SettingsError
from jubao_server.payments.product import PRODUCT as PAYMENTS
from jubao_server.tenancy.catalogue import CatalogueError, load_catalogue

from tests.platform.harness import CATALOGUE


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUBAO_SERVER__PORT", "70000")
    monkeypatch.setenv("JUBAO_STORAGE__BACKEND", "oracle")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "server.port (env JUBAO_SERVER__PORT)" in message
    assert "storage.backend (env JUBAO_STORAGE__BACKEND)" in message


def test_config_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "jubao.toml"
    config.write_text('[server]\nport = 6000\n[storage]\nbackend = "cassandra"\n')
    monkeypatch.delenv("JUBAO_CONFIG", raising=False)
    monkeypatch.setenv("JUBAO_SERVER__PORT", "6001")
    settings = load_settings(config)
    assert (settings.server.port, settings.storage.backend) == (6001, "cassandra")
    assert settings.server.host == "127.0.0.1"


def test_demo_catalogue_is_valid() -> None:
    kinds = {entry.tenant.kind.value for entry in load_catalogue(CATALOGUE)}
    assert kinds == {"bank", "fund_house", "platform", "operator"}


def test_catalogue_error_names_file_and_field(tmp_path: Path) -> None:
    text = (CATALOGUE / "demo-bank.toml").read_text().replace("requests_per_s = 2000", "requests_per_s = -1")
    (tmp_path / "demo-bank.toml").write_text(text)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(tmp_path)
    assert "demo-bank.toml" in str(caught.value) and "quota.requests_per_s" in str(caught.value)


def test_catalogue_file_name_must_match_the_tenant(tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text((CATALOGUE / "demo-bank.toml").read_text())
    with pytest.raises(CatalogueError, match="must match the file name"):
        load_catalogue(tmp_path)


def test_a_product_section_is_read_and_checked_like_the_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "jubao.toml"
    config.write_text("[payments]\nshard_count = 8\nwal_ttl_s = 0\n")
    monkeypatch.delenv("JUBAO_CONFIG", raising=False)
    monkeypatch.setenv("JUBAO_PAYMENTS__SHARD_LEASE_MS", "1")
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "payments.wal_ttl_s (env JUBAO_PAYMENTS__WAL_TTL_S)" in message
    assert "payments.shard_lease_ms (env JUBAO_PAYMENTS__SHARD_LEASE_MS)" in message
    config.write_text("[payments]\nshard_count = 8\n")
    monkeypatch.setenv("JUBAO_PAYMENTS__SHARD_LEASE_MS", "3000")
    section = PAYMENTS.settings_of(load_settings(config))
    assert (section.shard_count, section.shard_lease_ms, section.wal_ttl_s) == (8, 3000, 24 * 3600)


def test_a_section_of_no_enabled_product_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "jubao.toml"
    config.write_text("[ofd]\nexchange_dir = 'var/ofd'\n")  # the OFD exchange: a product not built yet
    monkeypatch.delenv("JUBAO_CONFIG", raising=False)
    with pytest.raises(SettingsError, match=r"ofd \(env JUBAO_OFD\)"):
        load_settings(config)

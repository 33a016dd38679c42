"""Settings and the tenant catalogue reject bad values with messages that name the field and source."""

from __future__ import annotations

from pathlib import Path

import pytest
from jubao_server.config import SettingsError, load_settings
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

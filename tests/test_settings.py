"""Settings precedence, validation and derived values."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedistream.settings import SettingsError, load_settings


def test_defaults_are_a_local_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.username == "owner"
    assert settings.data_dir == Path("fedistream-data")
    assert settings.handle == "@owner@127.0.0.1:8000"


def test_base_url_follows_the_port_when_not_configured(tmp_path: Path) -> None:
    settings = load_settings(env={"FEDISTREAM_PORT": "9123"}, data_dir=tmp_path)
    assert settings.base_url == "http://127.0.0.1:9123"


def test_env_overrides_file_and_flags_override_env(tmp_path: Path) -> None:
    config = tmp_path / "fedistream.toml"
    config.write_text(
        'base_url = "https://file.example.test"\nusername = "fromfile"\nport = 8100\n'
    )
    env = {"FEDISTREAM_USERNAME": "fromenv", "FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "true"}
    settings = load_settings(env=env, config_path=config, port=8200)
    assert settings.base_url == "https://file.example.test"
    assert settings.username == "fromenv"
    assert settings.port == 8200
    assert settings.allow_private_networks is True
    assert settings.domain == "file.example.test"
    assert settings.is_https


def test_config_in_data_dir_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d"
    data.mkdir()
    (data / "fedistream.toml").write_text('username = "alice"\n')
    assert load_settings(env={"FEDISTREAM_DATA_DIR": str(data)}).username == "alice"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"FEDISTREAM_BASE_URL": "example.com"}, "base_url"),
        ({"FEDISTREAM_BASE_URL": "https://example.com/blog"}, "site root"),
        ({"FEDISTREAM_USERNAME": "bad name"}, "username"),
        ({"FEDISTREAM_PORT": "eighty"}, "port"),
        ({"FEDISTREAM_PORT": "70000"}, "port"),
        ({"FEDISTREAM_ALLOW_PRIVATE_NETWORKS": "maybe"}, "allow_private_networks"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        load_settings(env=env, data_dir=tmp_path)


def test_unknown_keys_and_bad_toml_are_reported(tmp_path: Path) -> None:
    config = tmp_path / "fedistream.toml"
    config.write_text('colour = "blue"\n')
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(env={}, config_path=config)
    config.write_text("username = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(env={}, config_path=config)


def test_trailing_slash_is_dropped(tmp_path: Path) -> None:
    settings = load_settings(
        env={"FEDISTREAM_BASE_URL": "https://example.test/"}, data_dir=tmp_path
    )
    assert settings.base_url == "https://example.test"
    assert settings.url("/p/x") == "https://example.test/p/x"

"""Settings come from the environment once; secrets are generated or required by mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.settings import Settings


def test_embedded_mode_generates_and_keeps_a_secret_key(tmp_path: Path) -> None:
    env = {"BEACON_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    second = Settings.from_env(env)
    assert first.embedded
    assert len(first.secret_key.get_secret_value()) >= 40
    assert first.secret_key == second.secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_scaled_mode_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BEACON_SECRET_KEY"):
        Settings.from_env({"BEACON_DATA_DIR": str(tmp_path), "BEACON_REDIS_URL": "redis://x"})


def test_the_database_defaults_to_sqlite_in_the_data_directory(tmp_path: Path) -> None:
    settings = Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)})
    assert settings.effective_database_url == f"sqlite:///{(tmp_path / 'beacon.db').resolve()}"


def test_postgres_urls_use_psycopg(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"BEACON_DATA_DIR": str(tmp_path), "BEACON_DATABASE_URL": "postgres://u@h/db"}
    )
    assert settings.effective_database_url == "postgresql+psycopg://u@h/db"


def test_a_bad_number_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BEACON_MAX_BODY_BYTES must be a whole number"):
        Settings.from_env({"BEACON_DATA_DIR": str(tmp_path), "BEACON_MAX_BODY_BYTES": "1MB"})


@pytest.mark.parametrize("bad", ["ten", "10s", "0", "-1", "61", "nan", "inf"])
def test_a_bad_webhook_timeout_is_a_config_error_naming_it(tmp_path: Path, bad: str) -> None:
    env = {"BEACON_DATA_DIR": str(tmp_path), "BEACON_WEBHOOK_TIMEOUT": bad}
    with pytest.raises(ConfigError, match="BEACON_WEBHOOK_TIMEOUT must be"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "BEACON_WEBHOOK_TIMEOUT": "2.5"}).webhook_timeout == 2.5
    assert Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)}).webhook_timeout == 10


def test_secrets_do_not_show_in_the_settings_repr(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"BEACON_DATA_DIR": str(tmp_path), "BEACON_TWILIO_AUTH_TOKEN": "tw-secret-123"}
    )
    assert "tw-secret-123" not in repr(settings)
    assert settings.secret_key.get_secret_value() not in repr(settings)


def test_intake_writers_default_to_one_and_must_be_positive(tmp_path: Path) -> None:
    assert Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)}).intake_writers == 1
    env = {"BEACON_DATA_DIR": str(tmp_path), "BEACON_INTAKE_WRITERS": "3"}
    assert Settings.from_env(env).intake_writers == 3
    with pytest.raises(ConfigError, match="BEACON_INTAKE_WRITERS must be 1 or more"):
        Settings.from_env({**env, "BEACON_INTAKE_WRITERS": "0"})


def test_a_secret_key_under_32_bytes_is_refused(tmp_path: Path) -> None:
    env = {"BEACON_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="BEACON_SECRET_KEY is 31 bytes; it must be at least 32"):
        Settings.from_env({**env, "BEACON_SECRET_KEY": "k" * 31})
    assert Settings.from_env({**env, "BEACON_SECRET_KEY": "k" * 32}).secret_key.get_secret_value()


def test_an_empty_secret_key_file_never_gives_an_empty_key(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("\n")
    key = Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)}).secret_key.get_secret_value()
    assert len(key) >= 40
    assert (tmp_path / "secret_key").read_text().strip() == key
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_a_short_secret_key_file_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("short\n")
    with pytest.raises(ConfigError, match="secret_key: the secret key is 5 bytes"):
        Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)})


def test_the_outbox_lease_is_a_setting_within_bounds(tmp_path: Path) -> None:
    base = {"BEACON_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).outbox_lease_seconds == 60
    settings = Settings.from_env({**base, "BEACON_OUTBOX_LEASE_SECONDS": "15"})
    assert settings.outbox_lease.total_seconds() == 15
    for bad in ("soon", "0", "4", "3601", "-10"):
        with pytest.raises(ConfigError, match="BEACON_OUTBOX_LEASE_SECONDS"):
            Settings.from_env({**base, "BEACON_OUTBOX_LEASE_SECONDS": bad})

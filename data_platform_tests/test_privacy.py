"""The PII salt: one per home, complete or absent, never shown in resource config."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from data_platform.resources.build import build_resources
from data_platform.resources.privacy import SALT_FILE, SaltError, local_pii_salt
from data_platform.settings import load_settings


def test_concurrent_first_uses_agree_on_one_complete_salt(tmp_path):
    """Created in place, concurrent first uses read it empty or kept salts of their own (in a
    review: 11 empty and 5 different salts in 200 homes of 4 processes each)."""
    # Spawned, not forked: a fork of a test process with threads (pytest-xdist's) can hang.
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        for attempt in range(20):
            path = tmp_path / str(attempt) / SALT_FILE
            salts = pool.map(local_pii_salt, [path] * 8, chunksize=1)
            assert len(set(salts)) == 1 and len(salts[0]) == 64
            assert path.read_text() == salts[0]
            assert path.stat().st_mode & 0o777 == 0o600
            assert [p.name for p in path.parent.iterdir()] == [SALT_FILE]  # no temp file left


def test_an_empty_salt_file_is_one_line_not_an_empty_salt(tmp_path):
    path = tmp_path / SALT_FILE
    path.write_text("")
    with pytest.raises(SaltError, match="is empty: restore it from a backup"):
        local_pii_salt(path)


def test_the_salt_is_not_in_the_resource_config_the_ui_shows(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_PLATFORM_PII_SALT", raising=False)
    settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path)})
    privacy = build_resources(settings)["privacy"]
    salt = privacy.salt()
    assert salt == (Path(tmp_path) / SALT_FILE).read_text()
    assert salt not in json.dumps(privacy.model_dump(), default=str)

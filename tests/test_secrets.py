"""The library refuses a key that cannot be a header and a URL carrying credentials, naming
the setting and never the value (the CLI's side: tests/test_e2e_hostile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrunner.config import RunConfig
from batchrunner.errors import ConfigError


def config(tmp_path: Path, **changes: str) -> RunConfig:
    paths = {name: tmp_path / name for name in ("input_path", "output_path", "dead_letter_path")}
    return RunConfig(**paths, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key",
    ["sk-SECRET\n1234", "sk-SECRET 1234", "sk-SECRET\t1234", "sk-SÉCRET-1234", "sk\x7fSECRET"],
)
def test_a_key_that_cannot_be_a_header_is_refused_unseen(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, api_key=key)
    assert info.value.setting == "api_key"
    assert info.value.found is None
    assert "SECRET" not in str(info.value) and "SÉCRET" not in str(info.value)
    assert str(info.value).startswith("api_key must be printable ASCII")


def test_a_key_of_printable_ascii_is_taken(tmp_path: Path) -> None:
    assert config(tmp_path, api_key="sk-AZaz09._~+/=!#").api_key == "sk-AZaz09._~+/=!#"


@pytest.mark.parametrize(
    "url",
    [
        "http://someone:SECRET@api.example.com",
        "https://SECRET@api.example.com/v1",
        "http://:SECRET@127.0.0.1:8000",
        "http://[::1:SECRET",  # not even a URL: refused without being echoed either
    ],
)
def test_credentials_in_the_server_url_are_refused_unseen(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, server_url=url)
    assert info.value.setting == "server_url"
    assert info.value.found is None
    assert "SECRET" not in str(info.value)

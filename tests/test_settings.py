"""Settings resolve in one place: flag > IDME_* environment > config file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from idme.errors import ConfigError
from idme.settings import resolve

from clihelp import cli, one_error_line


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("IDME_HOME", "IDME_EMBEDDER", "IDME_COMPUTE", "IDME_ASR", "IDME_ASR_MODEL", "IDME_CONFIG"):
        monkeypatch.delenv(var, raising=False)


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path, monkeypatch) -> None:
    """Each level overrides the ones below it, field by field."""
    assert resolve(tmp_path).asr == "auto" and resolve(tmp_path).embedder == "campplus"
    (tmp_path / "config.toml").write_text('asr = "none"\nembedder = "ecapa"\ncompute = "cuda"\n')
    s = resolve(tmp_path)
    assert (s.asr, s.embedder, s.compute) == ("none", "ecapa", "cuda")
    assert s.config_file == tmp_path / "config.toml"
    monkeypatch.setenv("IDME_ASR", "whisper")
    monkeypatch.setenv("IDME_EMBEDDER", "campplus")
    s = resolve(tmp_path)
    assert (s.asr, s.embedder, s.compute) == ("whisper", "campplus", "cuda")
    s = resolve(tmp_path, asr="vosk", compute="cpu")
    assert (s.asr, s.embedder, s.compute) == ("vosk", "campplus", "cpu")


def test_home_from_env_and_config_path_override(tmp_path: Path, monkeypatch) -> None:
    """IDME_HOME picks the store; IDME_CONFIG points at a config file elsewhere."""
    monkeypatch.setenv("IDME_HOME", str(tmp_path / "store"))
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('asr = "none"\n')
    monkeypatch.setenv("IDME_CONFIG", str(cfg))
    s = resolve()
    assert s.home == tmp_path / "store" and s.asr == "none" and s.config_file == cfg


@pytest.mark.parametrize("text, fragment", [
    ("asr = [1, 2", "not valid TOML"),
    ('colour = "red"', "unknown key(s) colour"),
    ("asr = 3", "asr must be a string"),
    ('embedder = "xvector"', "unknown embedder 'xvector'"),
])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path: Path, text: str, fragment: str) -> None:
    """A broken config file raises ConfigError naming the file and what is wrong."""
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve(tmp_path)
    assert str(tmp_path / "config.toml") in str(info.value) and fragment in str(info.value)


def test_a_bad_env_value_names_the_variable(tmp_path: Path, monkeypatch) -> None:
    """An unknown value in IDME_ASR is reported against the variable, through the CLI as one line."""
    monkeypatch.setenv("IDME_ASR", "deepspeech")
    with pytest.raises(ConfigError, match=r"\$IDME_ASR: unknown asr 'deepspeech'"):
        resolve(tmp_path)
    result = cli("listen", "--file", "x.wav", "--home", tmp_path, env={"IDME_ASR": "deepspeech"})
    assert result.exit_code == 1
    one_error_line(result.stderr, "IDME_ASR")

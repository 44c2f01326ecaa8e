"""The lock is the install: pyproject.toml, uv.lock and the exported requirements/*.txt must agree.

`make demo` and `make test` install requirements/*.txt with --require-hashes, so a dependency added to
pyproject.toml without `make lock` would be missing from every fresh clone; these tests fail first.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _lock() -> dict:
    return tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))


def _marker(text: str) -> str:
    """A marker in one spelling: packaging's quotes, and python_version as uv writes it (python_full_version)."""
    if not text:
        return ""
    text = str(Requirement(f"x; {text}").marker)
    return " and ".join(sorted(m.strip() for m in text.replace("python_version", "python_full_version")
                               .split(" and ")))


def _norm(req: Requirement, extra: str | None = None) -> tuple:
    """(name, specifier, marker) with the extra folded into the marker, as uv records it."""
    markers = [str(req.marker)] if req.marker else []
    if extra is not None:
        markers.append(f"extra == '{extra}'")
    return (canonicalize_name(req.name), str(req.specifier), _marker(" and ".join(markers)))


def _declared() -> set[tuple]:
    project = _pyproject()["project"]
    out = {_norm(Requirement(r)) for r in project["dependencies"]}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        out |= {_norm(Requirement(r), extra) for r in reqs}
    return out


def _locked() -> set[tuple]:
    idme = next(p for p in _lock()["package"] if p["name"] == "idme")
    out = set()
    for r in idme["metadata"]["requires-dist"]:
        text = r["name"] + r.get("specifier", "") + (f"; {r['marker']}" if r.get("marker") else "")
        req = Requirement(text)
        out.add((canonicalize_name(req.name), str(req.specifier), _marker(str(req.marker or ""))))
    return out


def _pins(path: Path) -> set[tuple[str, str]]:
    return {(canonicalize_name(m.group(1)), m.group(2))
            for line in path.read_text(encoding="utf-8").splitlines() if (m := PIN.match(line))}


def test_pyproject_dependencies_match_the_lock() -> None:
    """Every dependency and extra in pyproject.toml is what uv.lock was resolved from (run `make lock`)."""
    declared, locked = _declared(), _locked()
    assert declared == locked, (f"pyproject.toml and uv.lock disagree; run `make lock`. "
                                f"Only in pyproject: {sorted(declared - locked)}; only in uv.lock: "
                                f"{sorted(locked - declared)}")


def test_build_group_matches_the_lock() -> None:
    """The locked build backend (installed with --no-build-isolation) is the one pyproject.toml names."""
    group = {canonicalize_name(Requirement(r).name): str(Requirement(r).specifier)
             for r in _pyproject()["dependency-groups"]["build"]}
    idme = next(p for p in _lock()["package"] if p["name"] == "idme")
    locked = {canonicalize_name(r["name"]): r.get("specifier", "") for r in idme["metadata"]["requires-dev"]["build"]}
    assert group == locked
    backend = _pyproject()["build-system"]["requires"]
    assert canonicalize_name(Requirement(backend[0]).name) in group


def test_exported_requirements_match_the_lock() -> None:
    """requirements/test.txt holds exactly the locked packages, and demo.txt a subset of them."""
    locked = {(canonicalize_name(p["name"]), p["version"]) for p in _lock()["package"] if p["name"] != "idme"}
    test_pins = _pins(ROOT / "requirements" / "test.txt")
    demo_pins = _pins(ROOT / "requirements" / "demo.txt")
    assert test_pins == locked, f"run `make lock`: {sorted(test_pins ^ locked)[:10]}"
    assert demo_pins <= locked and demo_pins, "run `make lock`"


def test_every_pin_has_hashes() -> None:
    """pip's --require-hashes needs a hash for every pinned line of both exported files."""
    for name in ("demo.txt", "test.txt"):
        text = (ROOT / "requirements" / name).read_text(encoding="utf-8")
        blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text)
        for block in blocks:
            if PIN.match(block):
                assert "--hash=sha256:" in block, f"{name}: {block.splitlines()[0]} has no hash"


def test_torch_and_torchaudio_pinned_together() -> None:
    """The ecapa extra pins torch and torchaudio exactly (a new torchaudio broke fresh clones once)."""
    ecapa = {canonicalize_name(Requirement(r).name): str(Requirement(r).specifier)
             for r in _pyproject()["project"]["optional-dependencies"]["ecapa"]}
    assert ecapa["torch"].startswith("==") and ecapa["torchaudio"].startswith("==")
    assert ecapa["torch"] == ecapa["torchaudio"]


def test_installed_versions_are_the_locked_ones() -> None:
    """This environment was installed from the lock: a few key packages carry the locked version."""
    from importlib.metadata import PackageNotFoundError, version

    locked = _pins(ROOT / "requirements" / "test.txt")
    by_name: dict[str, set[str]] = {}
    for n, v in locked:
        by_name.setdefault(n, set()).add(v)
    for name in ("numpy", "faiss-cpu", "onnxruntime", "typer"):
        try:
            got = version(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} is not installed")
        assert got in by_name[canonicalize_name(name)], f"{name} {got} is not the locked {by_name[name]}"

"""A wheel install works on its own: it carries the CAM++ encoder, and `idme enroll` + `idme listen` run from
a fresh virtual environment far from the checkout, offline, with no models directory (review 2026-12-01, §1.3)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
OWNER_TAKES = [EXAMPLES / "enroll" / f"me_{i}.wav" for i in (1, 2, 3)]
BUNDLED = ROOT / "src" / "idme" / "_models" / "campplus"

pytestmark = pytest.mark.slow


def _run(args: list[str | Path], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 600)
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)


def _network_denied() -> list[str]:
    """A command prefix that runs a process in a new, empty network namespace, or [] when not possible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    for prefix in ([unshare, "-rn"], [unshare, "-n"]):  # unprivileged user namespace first, then as root
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0:
                return prefix
        except (OSError, subprocess.SubprocessError):
            continue
    return []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """idme's wheel, built with pip from a copy of the project files (so the checkout gets no build/ or
    egg-info, which would add a second idme distribution next to the editable one)."""
    if importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("building the wheel needs pip and setuptools in the test environment")
    work = tmp_path_factory.mktemp("wheel-build")
    project = work / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = work / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                  "-q", "-w", out, "."], cwd=project)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = sorted(out.glob("idme-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_the_campplus_encoder(wheel: Path) -> None:
    """The wheel holds the bundled CAM++ ONNX file, byte for byte, with its manifest, licence and notes."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in ("campplus.onnx", "manifest.json", "LICENSE", "README.md"):
            assert f"idme/_models/campplus/{name}" in names, name
        onnx = zf.getinfo("idme/_models/campplus/campplus.onnx")
        assert onnx.file_size == (BUNDLED / "campplus.onnx").stat().st_size > 20_000_000
        assert zf.read("idme/_models/campplus/manifest.json") == (BUNDLED / "manifest.json").read_bytes()
        assert not any(n.startswith(("scripts/", "models/", "tests/")) for n in names)


def test_wheel_install_enrolls_and_labels_offline(wheel: Path, tmp_path: Path) -> None:
    """From a fresh venv with only the wheel installed (dependencies reached through a .pth file), run far
    from the checkout with no models directory and no network: enroll the owner from the example takes,
    then `listen --asr none --json` labels the owner's segments of the example meeting "Me"."""
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", venv])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    if not python.exists():  # pragma: no cover - Windows layout
        pytest.skip("expects a POSIX virtual environment layout")
    installed = _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # Dependencies come from this test environment: a plain path line in a .pth file is appended to
    # sys.path, and .pth files inside an appended directory are not processed, so the editable idme of
    # this environment (itself a .pth) stays out of the way.
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "zz-idme-test-deps.pth").write_text("".join(f"{p}\n" for p in ours))

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IDME_", "XDG_", "PYTHON", "VIRTUAL_ENV", "HF_"))}
    # No OS keyring here: the data key is wrapped by the test passphrase (issue 14), at the default Argon2 cost.
    env.update(HOME=str(tmp_path / "home"), IDME_HOME=str(tmp_path / "idme-home"), HF_HUB_OFFLINE="1",
               IDME_PASSPHRASE=os.environ["IDME_PASSPHRASE"],
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    deny = _network_denied()

    def idme(*args: str | Path) -> subprocess.CompletedProcess:
        return _run([*deny, venv / "bin" / "idme", *args], cwd=cwd, env=env)

    where = _run([*deny, python, "-c", "import idme, idme.models as m; print(idme.__file__); "
                  "print(m.model_path('campplus')); print(m.models_dir())"], cwd=cwd, env=env)
    assert where.returncode == 0, where.stderr
    package_file, campplus_dir, models_dir = (Path(line) for line in where.stdout.split())
    assert package_file.is_relative_to(venv) and not package_file.is_relative_to(ROOT)
    assert campplus_dir == package_file.parent / "_models" / "campplus"
    assert not models_dir.is_relative_to(ROOT)  # no checkout: the user data dir, under HOME

    enrolled = idme("enroll", *[a for take in OWNER_TAKES for a in ("--file", take)])
    assert enrolled.returncode == 0, enrolled.stderr
    assert "campplus" in enrolled.stderr
    listened = idme("listen", "--file", EXAMPLES / "meeting.wav", "--asr", "none", "--json")
    assert listened.returncode == 0, listened.stderr
    events = [json.loads(line) for line in listened.stdout.splitlines() if line.strip()]
    finals = [e for e in events if e["type"] != "end" and e["final"]]
    assert any(e["speaker"] == "Me" and e["kind"] == "me" for e in finals), events[:5]
    assert {e["speaker"] for e in finals} - {"Me"}  # the other people of the meeting are told apart

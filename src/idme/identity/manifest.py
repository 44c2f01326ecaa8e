"""Bulk enrollment from a CSV manifest (issue 12, item 4): ``idme enroll --manifest people.csv``.

Manifest format (UTF-8 CSV, comma-separated; ``#`` lines and blank lines ignored; an optional header row
whose first cell is ``name``):

    name,file[,file...]        one row per person with one or more recordings, or
    alice,alice_1.wav          one recording per row, the name repeated: rows of one name are one person
    alice,alice_2.wav

Relative paths are taken relative to the manifest's folder. Each person is enrolled as one profile from all of
their files together (the quality gate checks the takes against each other), and replaces any earlier takes of
that profile: the manifest says what each profile is. Resumable: ``<home>/manifest_state.json`` records, per
name, the SHA-256 of every file enrolled from a manifest, so a rerun skips people whose profile exists with
exactly those files and enrols the rest. A person whose takes the gate refuses is reported and left as it was
(``identity.enroll.enroll`` saves nothing unless every take passes).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EnrollmentError, IdmeError
from ..models.registry import sha256_file

#: The state file a manifest run keeps in IDME_HOME.
STATE_FILE = "manifest_state.json"
ENROLLED, SKIPPED, FAILED = "enrolled", "skipped", "failed"


@dataclass(frozen=True)
class ManifestRow:
    """One person of a manifest: the profile name and their recordings (absolute paths, manifest order)."""

    name: str
    files: tuple[Path, ...]
    #: 1-based manifest lines the person's files came from.
    lines: tuple[int, ...]


@dataclass(frozen=True)
class RowResult:
    """What happened to one person: ``enrolled``, ``skipped`` (already enrolled with the same files) or
    ``failed`` (``reason``: what the quality gate or the audio reader refused; nothing was written)."""

    name: str
    files: tuple[str, ...]
    status: str
    reason: str = ""
    #: Per-take quality reports (``TakeReport.to_dict()``) of an enrolled person.
    takes: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "files": list(self.files), "status": self.status, "reason": self.reason,
                "takes": list(self.takes)}


@dataclass(frozen=True)
class ManifestReport:
    """The outcome of a manifest run, one row per person in manifest order."""

    manifest: str
    rows: tuple[RowResult, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> int:
        return sum(r.status == FAILED for r in self.rows)

    def to_dict(self) -> dict:
        counts = {s: sum(r.status == s for r in self.rows) for s in (ENROLLED, SKIPPED, FAILED)}
        return {"manifest": self.manifest, **counts, "rows": [r.to_dict() for r in self.rows]}


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    """Parses a manifest (see the module doc). Raises IdmeError naming the line for a row without a file,
    and for a manifest with nobody in it; a missing file is the person's failure, reported later."""
    from .profiles import check_name

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise IdmeError(f"cannot read manifest {path}: {getattr(exc, 'strerror', None) or exc}") from None
    base = path.resolve().parent
    people: dict[str, tuple[list[Path], list[int]]] = {}
    for lineno, cells in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in cells]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if lineno == 1 and cells[0].lower() == "name":
            continue  # header
        files = [c for c in cells[1:] if c]
        if not files:
            raise IdmeError(f"{path}:{lineno}: expected 'name,file[,file...]', got {','.join(cells)!r}")
        try:
            name = check_name(cells[0])
        except IdmeError as exc:
            raise IdmeError(f"{path}:{lineno}: {exc}") from None
        got = people.setdefault(name, ([], []))
        for f in files:
            p = Path(f).expanduser()
            got[0].append(p if p.is_absolute() else base / p)
        got[1].append(lineno)
    if not people:
        raise IdmeError(f"manifest {path} names nobody: write 'name,file[,file...]' rows")
    return [ManifestRow(n, tuple(f), tuple(lines)) for n, (f, lines) in people.items()]


#: Associated data of the sealed state file: it names the people enrolled, personal data (issue 14).
STATE_IDENTITY = "idme/manifest-state"


def _load_state(home: Path, vault) -> dict:
    f = home / STATE_FILE
    if not f.is_file():
        return {}
    try:
        data = json.loads(vault.read(f, STATE_IDENTITY))  # a plaintext file from before reads as it is
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # an unreadable state only costs a re-enrolment


def run_manifest(idme, path: str | os.PathLike[str], *, keep_audio: bool = False, force: bool = False,
                 progress: Callable[[int, int, str], None] | None = None) -> ManifestReport:
    """Enrols every person of manifest ``path`` into ``idme``'s store (an ``api.Idme``), skipping those
    already enrolled from the same files. progress: ``progress(done, total, name)`` after each person."""
    from .._fs import atomic_write

    rows = read_manifest(path)
    state = _load_state(idme.home, idme.profiles.vault)
    out: list[RowResult] = []
    for i, row in enumerate(rows):
        files = tuple(str(f) for f in row.files)
        try:
            digests = [[str(f), sha256_file(f)] for f in row.files]
        except OSError as exc:
            out.append(RowResult(row.name, files, FAILED, f"cannot read {exc.filename}: {exc.strerror or exc}"))
        else:
            if idme.profiles.exists(row.name) and state.get(row.name) == digests:
                out.append(RowResult(row.name, files, SKIPPED, "already enrolled from these files"))
            else:
                try:
                    res = idme.enroll_files(row.name, list(row.files), keep_audio=keep_audio, force=force,
                                            replace=idme.profiles.exists(row.name))
                except (EnrollmentError, IdmeError) as exc:
                    out.append(RowResult(row.name, files, FAILED, str(exc).splitlines()[0] if str(exc) else
                                         type(exc).__name__))
                else:
                    state[row.name] = digests
                    atomic_write(idme.home / STATE_FILE,
                                 idme.profiles.vault.seal(json.dumps(state, indent=1).encode(), STATE_IDENTITY),
                                 mode=0o600)
                    out.append(RowResult(row.name, files, ENROLLED, "",
                                         tuple(r.to_dict() for r in res.reports)))
        if progress is not None:
            progress(i + 1, len(rows), row.name)
    return ManifestReport(str(path), tuple(out))

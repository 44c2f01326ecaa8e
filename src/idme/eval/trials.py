"""Verification trial lists, cosine scoring of trials, and an on-disk embedding cache.

Two list formats are read (one format per file, decided by its first trial line):

- VoxCeleb: ``1 enroll.wav test.wav`` (1 = same speaker / target, 0 = different / non-target);
- Kaldi:    ``enroll test target`` or ``enroll test nontarget``.

Relative paths are resolved against the directory of the list file. A path that does not exist and has
no extension is tried with the common audio extensions (Kaldi lists often name utterance ids such as
``1688-142285-0000``). Blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AudioError, IdmeError, StoreError

__all__ = ["AUDIO_EXTENSIONS", "EmbeddingCache", "Trial", "read_trials", "score_trials", "split_scores"]

logger = logging.getLogger(__name__)

#: Extensions tried, in order, for an extension-less path that does not exist (what libsndfile reads).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")

_KALDI_LABELS = {"target": True, "nontarget": False}
_VOX_LABELS = {"1": True, "0": False}


@dataclass(frozen=True)
class Trial:
    """One verification trial."""

    #: Enrollment-side audio file (absolute path).
    enroll: Path
    #: Test-side audio file (absolute path).
    test: Path
    #: True for a same-speaker (target) trial.
    target: bool


def _resolve(token: str, base: Path) -> Path | None:
    """The existing file ``token`` names (relative to ``base``), trying audio extensions; None if none."""
    path = Path(token).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_file():
        return path.resolve()
    if not path.suffix:
        for ext in AUDIO_EXTENSIONS:
            candidate = path.with_name(path.name + ext)
            if candidate.is_file():
                return candidate.resolve()
    return None


def read_trials(list_path: str | os.PathLike[str], check_files: bool = True) -> list[Trial]:
    """Parses a VoxCeleb or Kaldi trial list.

    list_path: the list file; relative audio paths are taken relative to its directory.
    check_files: resolve every path to an existing file (trying AUDIO_EXTENSIONS when it has none); when
        False, paths are only joined to the list's directory, not checked.
    Raises IdmeError naming the line for a malformed line, AudioError naming the first missing file.
    """
    list_path = Path(list_path)
    try:
        text = list_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IdmeError(f"cannot read trial list {list_path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise IdmeError(f"{list_path} is not a trial list (not UTF-8 text; an audio file?): give a list of "
                        "'1 a.wav b.wav' (VoxCeleb) or 'a b target|nontarget' (Kaldi) lines") from None
    base = list_path.parent.resolve()
    resolved: dict[str, Path | None] = {}  # each distinct name is looked up on disk once
    missing: list[tuple[int, str]] = []
    fmt: str | None = None
    trials: list[Trial] = []

    def path_of(token: str, lineno: int) -> Path:
        if not check_files:
            p = Path(token).expanduser()
            return p if p.is_absolute() else base / p
        if token not in resolved:
            resolved[token] = _resolve(token, base)
            if resolved[token] is None:
                missing.append((lineno, token))
        return resolved[token] or base / token

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{list_path}:{lineno}"
        if len(parts) != 3:
            raise IdmeError(
                f"{where}: expected 3 fields ('1 a.wav b.wav' or 'a b target'), got {len(parts)}: {line!r}"
            )
        # Kaldi is checked first: its label words cannot be mistaken for a VoxCeleb 0/1 label.
        line_fmt = "kaldi" if parts[2].lower() in _KALDI_LABELS else "voxceleb" if parts[0] in _VOX_LABELS else None
        if line_fmt is None:
            raise IdmeError(
                f"{where}: no trial label: expected '1|0 enroll test' (VoxCeleb) or "
                f"'enroll test target|nontarget' (Kaldi), got {line!r}"
            )
        if fmt is None:
            fmt = line_fmt
        elif line_fmt != fmt:
            raise IdmeError(f"{where}: {line_fmt} line in a {fmt} trial list: {line!r}")
        if fmt == "kaldi":
            enroll, test, target = parts[0], parts[1], _KALDI_LABELS[parts[2].lower()]
        else:
            enroll, test, target = parts[1], parts[2], _VOX_LABELS[parts[0]]
        trials.append(Trial(path_of(enroll, lineno), path_of(test, lineno), target))

    if missing:
        lineno, token = missing[0]
        more = f" (and {len(missing) - 1} more missing files)" if len(missing) > 1 else ""
        raise AudioError(
            f"{list_path}:{lineno}: audio file {token!r} not found under {base}{more}; "
            "paths in a trial list are relative to the list's directory"
        )
    if not trials:
        raise IdmeError(f"trial list {list_path} has no trials")
    return trials


class EmbeddingCache:
    """Embeddings of audio files, in memory and as ``.npy`` files, so repeated evaluations skip the encoder.

    An entry is keyed by the file's absolute path, modification time (ns) and size, plus the encoder
    name and version and a free-form ``pipeline`` string describing everything else that changes the
    embedding (VAD settings, cropping, resampling...). Any change to one of these is a cache miss, so a
    stale embedding is never returned; old entries simply stay on disk until the directory is removed.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        encoder_name: str,
        encoder_version: str,
        pipeline: str = "",
    ) -> None:
        """cache_dir: created if needed; encoder_name/version: from the Embedder; pipeline: see class doc."""
        self.cache_dir = Path(cache_dir)
        self.encoder_name = encoder_name
        self.encoder_version = encoder_version
        self.pipeline = pipeline
        self._memory: dict[str, np.ndarray] = {}
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create embedding cache {self.cache_dir}: {exc.strerror or exc}") from None

    def key(self, path: str | os.PathLike[str]) -> str:
        """Hex digest identifying ``path``'s current content stamp under this encoder and pipeline."""
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError as exc:
            raise AudioError(f"cannot stat audio file {p}: {exc.strerror or exc}") from None
        ident = [str(p), st.st_mtime_ns, st.st_size, self.encoder_name, self.encoder_version, self.pipeline]
        return hashlib.sha256(json.dumps(ident).encode("utf-8")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.cache_dir / f"{key}.npy"

    def get(self, path: str | os.PathLike[str]) -> np.ndarray | None:
        """The cached embedding of ``path``, or None on a miss (an unreadable entry counts as a miss)."""
        k = self.key(path)
        if k in self._memory:
            return self._memory[k]
        f = self._file(k)
        if not f.is_file():
            return None
        try:
            emb = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable cache entry %s (%s)", f, exc)
            return None
        self._memory[k] = emb
        return emb

    def put(self, path: str | os.PathLike[str], embedding: np.ndarray) -> None:
        """Stores ``embedding`` for ``path`` in memory and on disk (atomically: no torn files on a crash)."""
        k = self.key(path)
        emb = np.asarray(embedding)
        self._memory[k] = emb
        import io

        from .._fs import atomic_write

        buf = io.BytesIO()
        np.save(buf, emb, allow_pickle=False)
        try:
            atomic_write(self._file(k), buf.getvalue(), mode=0o600)
        except OSError as exc:
            raise StoreError(f"cannot write embedding cache {self.cache_dir}: {exc.strerror or exc}") from None

    def get_or_compute(self, path: str | os.PathLike[str], compute: Callable[[Path], np.ndarray]) -> np.ndarray:
        """The cached embedding of ``path``, computing and storing it with ``compute(path)`` on a miss."""
        emb = self.get(path)
        if emb is None:
            emb = np.asarray(compute(Path(path)))
            self.put(path, emb)
        return emb


def score_trials(
    trials: Sequence[Trial],
    embed_file: Callable[[Path], np.ndarray],
    cache: EmbeddingCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine-scores every trial, embedding each distinct file once.

    embed_file: path -> embedding, shape (dim,); need not be unit norm (rows are normalised here).
    cache: optional EmbeddingCache consulted before ``embed_file`` is called.
    progress: optional ``progress(done, total)`` called after each distinct file.
    Returns ``(scores, labels)``: float64 (n_trials,) cosine similarities in [-1, 1] and bool
    (n_trials,) target labels, in trial order.
    """
    if not trials:
        raise IdmeError("no trials to score")
    index: dict[Path, int] = {}
    for t in trials:
        for p in (t.enroll, t.test):
            index.setdefault(p, len(index))
    files = list(index)
    rows: list[np.ndarray] = []
    for i, path in enumerate(files):
        emb = cache.get_or_compute(path, embed_file) if cache is not None else np.asarray(embed_file(path))
        emb = np.asarray(emb, dtype=np.float64)
        if emb.ndim != 1 or (rows and emb.shape != rows[0].shape):
            want = f"({rows[0].shape[0]},)" if rows else "(dim,)"
            raise IdmeError(f"embedding of {path} has shape {emb.shape}, expected {want}")
        norm = float(np.linalg.norm(emb))
        if not np.isfinite(norm) or norm == 0.0:
            raise IdmeError(f"embedding of {path} is zero or not finite; is the file silent or too short?")
        rows.append(emb / norm)
        if progress is not None:
            progress(i + 1, len(files))
    # The one scoring function the tracker and `idme verify` use (review 2026-12-01 §1.7).
    from ..identity.verify import score

    scores = np.array([score(rows[index[t.enroll]], rows[index[t.test]]) for t in trials], dtype=np.float64)
    labels = np.fromiter((t.target for t in trials), dtype=bool, count=len(trials))
    return scores, labels


def split_scores(
    scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(target_scores, nontarget_scores)`` from parallel score and label arrays."""
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels, dtype=bool)
    if s.shape != lab.shape:
        raise IdmeError(f"scores {s.shape} and labels {lab.shape} differ in shape")
    return s[lab], s[~lab]

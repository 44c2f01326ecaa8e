"""``export_person`` and ``forget_person``: everything idme holds about one person, gathered through the
public stores (profiles, kept takes, replay fingerprints, sessions, audit log) so it works whether or not
the files are encrypted at rest."""

from __future__ import annotations

import io
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ProfileError

logger = logging.getLogger(__name__)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, ensure_ascii=False, default=str).encode("utf-8")


def _label(name: str) -> str:
    from ..identity.profiles import OWNER

    return "Me" if name == OWNER else name


def export_person(idme, name: str, out: str | os.PathLike[str], passphrase: str) -> dict[str, Any]:
    """See ``api.Idme.export_person``."""
    import soundfile as sf

    from .. import __version__
    from ..identity.enroll import read_kept_take
    from ..identity.profiles import check_name
    from ..identity.replay import FingerprintStore
    from ..session.privacy import person_segments
    from .archive import write

    name = check_name(name)
    files: dict[str, bytes] = {}
    store = idme.profiles
    has_profile = store.exists(name)
    n_takes = n_fp = 0
    if has_profile:
        prof = store.get(name)
        files["profile/profile.json"] = _json(prof.to_dict())
        files["profile/embeddings.npy"] = _npy(prof.embeddings.astype(np.float32))
        audio = store.profile_dir(name) / "audio"
        for wav in sorted(audio.glob("take_*.wav")) if audio.is_dir() else []:
            buf = io.BytesIO()
            sf.write(buf, read_kept_take(store, wav), 16000, format="WAV", subtype="PCM_16")
            files[f"takes/{wav.name}"] = buf.getvalue()
            n_takes += 1
        fps = FingerprintStore(store.profile_dir(name)).load()
        if fps:
            n_fp = len(fps)
            files["fingerprints/labels.json"] = _json([lab for lab, _ in fps])
            for i, (_, fp) in enumerate(fps):
                files[f"fingerprints/{i:04d}.npy"] = _npy(fp.signs)
    label = _label(name)
    sessions = person_segments(idme.sessions, label)
    for s in sessions:
        try:
            emb = idme.sessions.speaker_embeddings(s["session_id"], label)
        except Exception:  # noqa: BLE001 - SessionError: no embeddings saved for them there
            emb = None
        if emb is not None and len(emb):
            files[f"sessions/{s['session_id']}/voice_embeddings.npy"] = _npy(emb)
            s["voice_embeddings"] = f"sessions/{s['session_id']}/voice_embeddings.npy"
    files["sessions.json"] = _json(sessions)
    audit = [e.to_dict() for e in idme.audit(name)]
    files["audit.json"] = _json(audit)
    if not has_profile and not sessions and not audit:
        raise ProfileError(f"idme holds nothing about '{name}': no profile, session or audit entry")
    manifest = {"format": "idme-export", "version": 1, "name": name, "label_in_sessions": label,
                "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "idme_version": __version__,
                "counts": {"profile": int(has_profile), "takes": n_takes, "fingerprints": n_fp,
                           "sessions": len(sessions), "segments": sum(len(s["segments"]) for s in sessions),
                           "audit": len(audit)},
                "files": sorted(files)}
    write(out, {"manifest.json": _json(manifest), **files}, passphrase)
    return manifest


def _overwrite(path: Path) -> None:
    """Best effort: zeros over a file before it is unlinked (on copy-on-write or flash storage the old
    blocks may survive; encryption at rest is what protects them there)."""
    try:
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        pass


def forget_person(idme, name: str, force: bool = False, drop_text: bool = False) -> dict[str, Any]:
    """See ``api.Idme.forget_person``."""
    from ..identity.profiles import OWNER, check_name
    from ..session.privacy import forget_in_sessions

    name = check_name(name)
    store = idme.profiles
    if name == OWNER and not force:
        raise ProfileError(f"'{OWNER}' is your own voiceprint (the owner); pass --force to forget it")
    has_profile = store.exists(name)
    label = _label(name)
    done = forget_in_sessions(idme.sessions, label, name, drop_text=drop_text)
    # without a profile here, a linked gallery may still hold them (a change it missed): delete those rows
    gallery_rows = 0 if has_profile else sum(idme.mirror.changed((name,)).values())
    unchecked = not has_profile and any(name in f.names for f in idme.sync_failures)
    if not has_profile and not done.relabelled and not done.audit_rows and not gallery_rows and not unchecked:
        raise ProfileError(f"idme holds nothing about '{name}': no profile, session or audit entry")
    for sid in done.relabelled:
        idme.forget_undo(sid, name)  # the `idme name --undo` records that name them
    files = 0
    if store.profile_dir(name).exists():
        for d in (store.profile_dir(name), store.history_dir(name)):
            for p in sorted(d.rglob("*")) if d.is_dir() else []:
                if p.is_file():
                    _overwrite(p)
                    files += 1
        gallery_rows = sum((store.remove(name, force=True) or {}).values())
    logger.info("forgot %s: profile %s, %d file(s) overwritten, %d session(s) relabelled", name,
                "removed" if has_profile else "absent", files, len(done.relabelled))
    return {"name": name, "profile_removed": has_profile, "files_removed": files,
            "gallery_rows_removed": gallery_rows, **done.to_dict()}

"""idme as a library: one facade that the CLI, the server and the benchmark all call.

    from idme.api import Idme
    idme = Idme()                                   # settings: flag > IDME_* > config file > default
    idme.enroll_files("me", ["me1.wav", "me2.wav"])
    session = idme.open_live(file="meeting.wav", sinks=[JsonLinesSink(sys.stdout)])
    result = session.run()                          # session.stop() / .abort() from another thread
    idme.export(result.session_id, "meeting.md")

Nothing here prints, parses arguments or exits: results are dataclasses, failures are ``IdmeError``s with a
one-line message. The encoder is loaded lazily, once per ``Idme``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .embed.base import Embedder
from .errors import AudioError, ProfileError
from .identity.enroll import TakeReport
from .identity.profiles import OWNER, Profile, ProfileStore
from .identity.thresholds import Thresholds
from .live import LiveSession, is_narrowband, session_settings
from .pipeline import LabelOptions
from .session.store import SessionStore
from .settings import Settings, resolve


@dataclass
class EnrollResult:
    """What an enrolment added."""

    profile: Profile
    reports: list[TakeReport]
    #: Paths of the kept enrollment audio (``keep_audio=True``), else empty.
    kept_audio: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.to_dict(), "takes": [r.to_dict() for r in self.reports],
                "kept_audio": [str(p) for p in self.kept_audio]}


@dataclass
class NamedSpeaker:
    """``name_speaker``'s outcome: the new (or grown) profile and how many segments were relabelled."""

    session_id: str
    speaker: str
    profile: Profile
    relabelled: int

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "speaker": self.speaker, "profile": self.profile.to_dict(),
                "relabelled": self.relabelled}


class _Lazy:
    """A value built on first ``get()``, once even when threads ask at once (server requests)."""

    def __init__(self, build) -> None:
        self._build, self._value, self._lock = build, None, threading.Lock()

    def get(self):
        with self._lock:
            if self._build is not None:
                self._value, self._build = self._build(), None
            return self._value


#: Associated data of the encrypted ``idme name --undo`` records (idme.vault).
UNDO_IDENTITY = "idme/undo"


def _check_segmenter(name: str) -> str:
    """``name`` if it is a known segmenter, else ConfigError."""
    from .errors import ConfigError
    from .segment import SEGMENTERS

    if name not in SEGMENTERS:
        raise ConfigError(f"unknown segmenter {name!r}; choose one of: {', '.join(SEGMENTERS)}")
    return name


class Idme:
    """The library facade. Cheap to create; the encoder and stores are opened on first use."""

    def __init__(self, settings: Settings | None = None, *, embedder: Embedder | None = None) -> None:
        """settings: None resolves them from the environment and config file (``idme.settings.resolve``).
        embedder: an already-loaded encoder to share (a server shares one across requests)."""
        self.settings = settings if settings is not None else resolve()
        if embedder is not None:
            self.__dict__["embedder"] = embedder

    # -- building blocks -----------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.settings.home

    @cached_property
    def embedder(self) -> Embedder:
        from .embed import make_embedder

        return make_embedder(self.settings.embedder, self.settings.compute)

    @property
    def encoder_info(self) -> dict[str, Any]:
        e = self.embedder
        return {"name": e.name, "version": e.version, "dimension": e.dimension}

    @cached_property
    def profiles(self) -> ProfileStore:
        store = ProfileStore(self.home)
        store.on_change = self.mirror.changed
        return store

    # -- galleries the store is mirrored into (identity.links) ---------------------------------------
    @cached_property
    def mirror(self):
        """Keeps the galleries ``migrate_profiles`` linked to this home in step with its profile store
        (``identity.links.Mirror``; the store's change hook)."""
        from .identity.links import GalleryLinks, Mirror

        return Mirror(GalleryLinks(self.home, lambda: self.profiles.vault), lambda: self.profiles)

    @property
    def gallery_links(self):
        """The galleries linked to this home (``identity.links.GalleryLinks``)."""
        return self.mirror.links

    @property
    def sync_failures(self):
        """``identity.links.SyncFailure`` of each linked gallery that changes of the store made in this process
        have not reached (their names are also kept in the link record for the next change to retry). The
        CLI ends such a command with exit 1; the server logs them."""
        return self.mirror.failures

    def unlink_gallery(self, url: str, table: str = "idme_voiceprints"):
        """Stops mirroring the store into ``table`` at ``url`` (its rows stay: drop the table to delete
        them). Returns the ``identity.links.GalleryLink`` removed; ProfileError when it was not linked."""
        link = self.mirror.unlink(url, table)
        if link is None:
            from .identity.links import redact

            raise ProfileError(f"{table} on {redact(url)} is not linked to this home; see `idme profiles galleries`")
        return link

    @cached_property
    def sessions(self) -> SessionStore:
        return SessionStore(self.home)

    def thresholds(self) -> Thresholds:
        """The thresholds in force for this encoder: calibrated ones in ``home`` if any, else the defaults."""
        from .identity.thresholds import load

        return load(self.embedder.name, self.home, version=self.embedder.version)

    def calibration(self):
        """The quality-aware score calibration (``eval.calibration.QualityCalibration``) verify and identify
        use, or None (cosine thresholds decide): ``<home>/calibration.json`` for this encoder first; then, unless
        this home holds cosine thresholds calibrated by ``idme eval calibrate --far`` (the user's own choice
        wins), the one shipped for the bundled encoder (issue 12)."""
        from .eval.calibration import load

        enc = f"{self.embedder.name}@{self.embedder.version}"
        own = load(enc, self.home, shipped=False)
        if own is not None or self.thresholds().source.startswith("calibrated"):
            return own
        return load(enc)

    # -- enrolment -----------------------------------------------------------------------------------
    def enroll(self, name: str, takes: Sequence[tuple[str, np.ndarray]], native_rates: Sequence[int] | None = None,
               keep_audio: bool = False, force: bool = False, replace: bool = False) -> EnrollResult:
        """Adds takes ([(source label, 16 kHz float32 samples)]) to profile ``name`` behind the quality gate.
        force: enrol even when the voice already matches another profile. replace: the takes replace the
        profile's old ones instead of joining them."""
        from .identity.enroll import enroll, keep_audio as save_audio
        from .identity.profiles import check_name

        name = check_name(name)
        profile, reports = enroll(self.profiles, self.embedder, name, list(takes), self.thresholds(),
                                  native_rates=list(native_rates) if native_rates else None, force=force,
                                  replace=replace)
        kept = save_audio(self.profiles, profile.name, list(takes)) if keep_audio else []
        self._remember_takes(profile.name, takes)
        return EnrollResult(profile, reports, kept)

    def _remember_takes(self, name: str, takes: Sequence[tuple[str, np.ndarray]]) -> None:
        """Keeps the replay fingerprint of each enrollment take (issue 14): a later attempt that is a copy
        of one is refused as ``replay`` by a liveness verify."""
        from .identity.replay import FingerprintStore, fingerprint

        store = FingerprintStore(self.profiles.profile_dir(name))
        for label, samples in takes:
            store.add(f"enroll:{Path(str(label)).name}", fingerprint(samples, 16000))

    def enroll_files(self, name: str, files: Sequence[str | os.PathLike[str]], keep_audio: bool = False,
                     force: bool = False, replace: bool = False) -> EnrollResult:
        """``enroll`` from recordings (any format and rate libsndfile or PyAV reads)."""
        from .identity.enroll import read_takes

        takes, rates = read_takes(list(files))
        return self.enroll(name, takes, rates, keep_audio, force, replace)

    def enroll_manifest(self, manifest: str | os.PathLike[str], keep_audio: bool = False, force: bool = False,
                        progress=None):
        """Bulk enrollment from a CSV manifest (``identity.manifest``: ``name,file[,file...]`` rows, or one file
        per row with the name repeated): one profile per person, resumable (people already enrolled from the
        same files are skipped), a failing person reported and left unwritten. Returns a ManifestReport.
        progress: ``progress(done, total, name)`` after each person."""
        from .identity.manifest import run_manifest

        return run_manifest(self, manifest, keep_audio=keep_audio, force=force, progress=progress)

    def reembed(self, name: str | None = None) -> list[Profile]:
        """Re-embeds ``name`` (or every profile with kept audio) with the current encoder."""
        from .identity.enroll import reembed

        names = [name] if name else [n for n in self.profiles.names()
                                     if (self.profiles.profile_dir(n) / "audio").is_dir()]
        return [reembed(self.profiles, self.embedder, n, self.thresholds()) for n in names]

    # -- live sessions -------------------------------------------------------------------------------
    def open_live(self, file: str | os.PathLike[str] | None = None, *, realtime: bool = False, speed: float = 1.0,
                  device: int | str | None = None, source: Any = None, sinks: Sequence[Any] = (),
                  save: bool = True, transcribe: bool = True, require_owner: bool = True,
                  min_speakers: int | None = None, max_speakers: int | None = None,
                  segmenter: str = "webrtc", latency_s: float = 2.0) -> LiveSession:
        """A ready-to-run session: ``file`` (as fast as possible, or ``realtime`` at ``speed``), the
        microphone ``device`` (default input when neither is given), or an already-open ``source``.

        save: journal it in the store (a session id the user can export). transcribe: use the recogniser
        ``settings.asr`` selects. require_owner: refuse to start when nobody is enrolled as "me" (False:
        speakers are labelled Speaker N / enrolled names only, like ``eval meetings``).
        min_speakers / max_speakers: bounds on the number of speakers the final re-clustering leaves.
        segmenter: "webrtc" (default) or "pyannote" (overlap-aware rolling buffer, :mod:`idme.segment.live`;
        final labels ``latency_s`` (0.5-5) seconds after the speech).
        ``session.notes`` holds hints worth showing once (e.g. how to add a transcription model).
        """
        from .audio.sources import open_source
        from .identity.profiles import check_encoder
        from .transcribe.select import make_transcriber

        if realtime and file is None:
            raise AudioError("--realtime plays a recording: add --file PATH")
        if file is not None and device is not None:
            raise AudioError("--device is for the microphone; drop it when labelling --file")
        profiles = self.profiles.all()
        if require_owner and not any(p.name == OWNER for p in profiles):
            raise ProfileError("no enrolled owner: run `idme enroll` (microphone) or `idme enroll --file me.wav` first")
        encoder = self.encoder_info
        for p in profiles:
            check_encoder(p, encoder)
        transcriber, hint = (make_transcriber(self.settings.asr, self.settings.asr_model) if transcribe
                             else (None, None))
        th = self.thresholds()
        # The tracker's Me / named decisions use the calibrated LLR verify uses (issue 12), when there is one.
        calibration = self.calibration()
        if source is None:
            source = open_source(file=file, realtime=realtime, device=device,
                                 **({"speed": speed} if realtime else {}))
        writer = None
        try:
            options = LabelOptions(min_speakers=min_speakers, max_speakers=max_speakers)
            live = bool(getattr(source, "live", True))
            if save:
                pruned = self.prune_sessions()  # retention (issue 14): old sessions go before a new one starts
                if pruned is not None and pruned.deleted:
                    import logging

                    logging.getLogger(__name__).warning("retention: deleted %d session(s) older than %g days",
                                                        len(pruned.deleted), pruned.older_than_days)
                models = {"encoder": encoder,
                          "asr": None if transcriber is None else {
                              "name": transcriber.name, "version": transcriber.version,
                              "language": getattr(transcriber, "language", None)}}
                extra: dict[str, Any] = {"realtime": realtime}
                if segmenter != "webrtc":
                    extra["segmenter"] = {"name": _check_segmenter(segmenter), "latency_s": latency_s}
                if min_speakers is not None or max_speakers is not None:
                    extra["speakers"] = {"min": min_speakers, "max": max_speakers}
                if calibration is not None:
                    extra["calibration"] = {"encoder": calibration.encoder, "threshold": calibration.threshold}
                if file is not None:
                    # the RTTM file id a reference for this recording uses
                    extra["uri"] = Path(file).stem if str(file) != "-" else "stdin"
                settings = session_settings(source, th, options, live, is_narrowband(source), profiles, **extra)
                writer = self.sessions.create(settings, models, source=settings["source"])
            session = LiveSession(source, self.embedder, profiles, th, transcriber=transcriber, sinks=sinks,
                                  writer=writer, live=live, options=options,
                                  segmenter=_check_segmenter(segmenter), latency_s=latency_s,
                                  calibration=calibration)
        except BaseException:
            if writer is not None:
                writer.close()
            source.close()
            raise
        session.notes = [hint] if hint else []
        return session

    # -- sessions ------------------------------------------------------------------------------------
    def name_speaker(self, session: str, speaker: str, person: str, force: bool = False) -> NamedSpeaker:
        """Turns ``speaker`` of ``session`` (e.g. "Speaker 2") into profile ``person`` and relabels the session.

        The voiceprint is built from the speaker's reliable segments (>= 1 s), weighted by duration, and
        must pass the enrollment gate (a cluster that holds two people is refused). Unless ``force``, the
        owner is protected (naming "Me", or naming anyone ``me``, is refused), a speaker is added to an
        existing profile only when its voice passes that profile's threshold, and a new profile is refused
        when the voice already matches another one. The profile as it was is kept for ``undo_name``."""
        from .identity.enroll import check_distinct, profile_from_speaker
        from .identity.profiles import check_name

        person = check_name(person)
        sess = self.sessions.get(session)
        if sess.status == "running":
            raise ProfileError(f"session {sess.id} is still running; name its speakers once it has ended")
        kinds = {sp.label: sp.kind for sp in sess.speakers}
        if not force and (kinds.get(speaker) == "me" or speaker == "Me"):
            raise ProfileError(f"'{speaker}' is you (the owner): naming it would copy your voiceprint into "
                               f"'{person}'; pass --force if that is really what you want")
        if not force and person == OWNER:
            raise ProfileError(f"naming {speaker} 'me' adds their voice to your own voiceprint; enrol yourself "
                               "with `idme enroll` instead, or pass --force if this speaker really is you")
        embs = self.sessions.speaker_embeddings(sess.id, speaker)
        durations = self.sessions.speaker_durations(sess.id, speaker)
        if embs is None or len(embs) == 0:
            raise ProfileError(f"session {sess.id} has no voice samples for '{speaker}'; "
                               f"see `idme sessions show {sess.id}`")
        th = self.thresholds()
        takes, meta = profile_from_speaker(embs, durations, person, th)
        encoder = dict(sess.models.get("encoder") or {})
        for m in meta:
            m["source"] = f"named from {speaker} of session {sess.id}"
        if not force:
            self._check_named_voice(takes, person, encoder, th, check_distinct)
        backup = self.profiles.backup(person)
        had_label = person in kinds
        profile = self.profiles.add(person, takes, encoder, meta)
        n = self.sessions.rename_speaker(sess.id, speaker, person, kind="me" if person == OWNER else "enrolled")
        self._save_undo(sess.id, {"speaker": speaker, "speaker_kind": kinds.get(speaker, "unknown"),
                                  "person": person, "backup": None if backup is None else str(backup),
                                  "merged_in_session": had_label})
        return NamedSpeaker(sess.id, speaker, profile, n)

    def _check_named_voice(self, takes: np.ndarray, person: str, encoder: dict, th: Thresholds,
                           check_distinct) -> None:
        """``name_speaker``'s voice checks: an existing profile must accept the speaker's voiceprint, and a
        new one must not duplicate another profile's voice."""
        from .identity.enroll import acceptance_bar
        from .identity.profiles import check_encoder

        centroid = takes.mean(axis=0)
        centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
        if self.profiles.exists(person):
            prof = self.profiles.get(person)
            check_encoder(prof, encoder)
            score = float(prof.centroid @ centroid)
            bar = acceptance_bar(person, th, prof.narrowband)
            if score < bar:
                raise ProfileError(f"this speaker does not sound like the existing profile '{person}' "
                                   f"(similarity {score:.2f} < {bar:.2f}); pick a new name, or pass --force "
                                   "to add them anyway")
            return
        others = [p for p in self.profiles.all()
                  if (p.encoder.get("name"), p.encoder.get("version")) == (encoder.get("name"), encoder.get("version"))]
        check_distinct(takes, person, others, th)

    def _undo_path(self, session_id: str) -> Path:
        from .identity.profiles import HISTORY_DIR

        return self.profiles.root / HISTORY_DIR / "undo" / f"{session_id}.json"

    def _undo_history(self, session_id: str) -> list[dict[str, Any]]:
        """The ``name_speaker`` records of a session, oldest first (decrypted; none when there is no file)."""
        import json

        path = self._undo_path(session_id)
        return json.loads(self.profiles.vault.read(path, UNDO_IDENTITY)) if path.exists() else []

    def _write_undo(self, session_id: str, history: list[dict[str, Any]]) -> None:
        """Replaces a session's undo records (encrypted at rest, issue 14: they name people and sessions);
        an empty history removes the file."""
        import json

        from ._fs import atomic_write

        path = self._undo_path(session_id)
        if not history:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, self.profiles.vault.seal(json.dumps(history, indent=1).encode(), UNDO_IDENTITY), 0o600)

    def _save_undo(self, session_id: str, record: dict[str, Any]) -> None:
        self._write_undo(session_id, self._undo_history(session_id) + [record])

    def forget_undo(self, session_id: str, person: str | None = None) -> None:
        """Drops the ``undo_name`` records of a deleted session (they name it), or only those that named
        ``person`` (``forget``: the other people's namings in that session stay undoable)."""
        if person is None:
            self._undo_path(session_id).unlink(missing_ok=True)
            return
        history = self._undo_history(session_id)
        kept = [r for r in history if r.get("person") != person]
        if len(kept) != len(history):
            self._write_undo(session_id, kept)

    def undo_name(self, session: str) -> dict[str, Any]:
        """Undoes the last ``name_speaker`` on ``session``: the profile is put back as it was (removed if
        it was new) and the session's segments get their old label back. Returns what was undone.

        When the named person was already a speaker of that session the two were merged there, and only
        the profile is restored (the session keeps the merged label; ``merged_in_session`` says so)."""
        sess = self.sessions.get(session)
        history = self._undo_history(sess.id)
        if not history:
            raise ProfileError(f"nothing to undo: no speaker of session {sess.id} was named")
        rec = history.pop()
        self.profiles.restore(rec["person"], None if rec["backup"] is None else Path(rec["backup"]))
        if not rec["merged_in_session"]:
            self.sessions.rename_speaker(sess.id, rec["person"], rec["speaker"], kind=rec["speaker_kind"])
        self._write_undo(sess.id, history)
        return {"session_id": sess.id, **rec}

    def export(self, session: str, out: str | os.PathLike[str], fmt: str | None = None) -> Path | None:
        """Writes ``session`` as md/txt/srt/vtt/json/rttm to ``out`` ("-" = stdout); returns the path."""
        from .session.export import write_export

        return write_export(self.sessions.get(session), out, fmt)

    def render(self, session: str, fmt: str) -> str:
        """``session`` rendered as md/txt/srt/vtt/json/rttm, as text (what the server returns)."""
        from .session.export import export

        return export(self.sessions.get(session), fmt)

    # -- verify (1:1) and identify (1:N), issue 12 ---------------------------------------------------
    def verify(self, name: str, file_or_samples: Any, *, sample_rate: int | None = None, expect: str | None = None,
               liveness: bool | None = None, remember: bool = True):
        """Is the speech in ``file_or_samples`` profile ``name``'s voice? Returns an ``identity.verify.Check``
        (decision accept / reject / not_enough_speech / not_enrolled, score, threshold, speech, condition).

        file_or_samples: a path (any format ``read_audio`` reads), an ``AudioFrame``, or float32 samples (n,)
        with their ``sample_rate``. Raises ProfileError for a profile made by another encoder.

        Liveness (issue 14), on when ``expect`` is given or ``liveness=True``: returns an
        ``identity.replay.LiveCheck``; decision ``replay`` when the audio is a near-copy of one of the
        profile's enrollment takes or accepted attempts, ``wrong_content`` when the voice passed but the digits
        spoken (Whisper tiny.en, number words read as digits, CONTENT_MAX_EDITS tolerance, else the challenge
        forced through the decoder: ``identity.challenge``) are not ``expect``.
        remember: an accepted liveness attempt's fingerprint is kept, so its replay is refused later."""
        from .identity.profiles import check_encoder, check_name
        from .identity.verify import check

        name = check_name(name)
        samples, native = _test_audio(file_or_samples, sample_rate)
        profile = self.profiles.get(name) if self.profiles.exists(name) else None
        if profile is not None:
            check_encoder(profile, self.encoder_info)
        cal = self.calibration()
        # the store's other voices: where a score-normalised calibration centres the trial (Domain)
        domain = self._domain() if profile is not None and getattr(cal, "norm", None) is not None else None
        result = check(profile, samples, self.embedder, self.thresholds(), native_rate=native, name=name,
                       calibration=cal, domain=domain)
        if not (liveness or (liveness is None and expect is not None)):
            return self._audit("verify", result)
        return self._audit("verify", self._live(result, samples, expect, remember))

    def _live(self, result, samples: np.ndarray, expect: str | None, remember: bool):
        """``result`` with the replay and content checks of a liveness verify (see ``verify``)."""
        from datetime import datetime, timezone

        from .identity.replay import FingerprintStore, check_challenge, fingerprint, live_check

        expected = None if expect is None else check_challenge(expect)
        if result.decision == "not_enrolled":
            return live_check(result, expected=expected, heard=None, match=None)
        fp = fingerprint(samples, 16000)
        store = FingerprintStore(self.profiles.profile_dir(result.name))
        match = store.closest(fp)
        heard = content = None
        if expected is not None and result.decision == "accept" and not match.replay:
            asr = self._challenge_asr
            if hasattr(asr, "check"):  # identity.challenge.ChallengeRecogniser: scores the challenge itself
                content = asr.check(samples, expected)
            else:
                heard = asr.transcribe(samples).text
        live = live_check(result, expected=expected, heard=heard, match=match, content=content)
        if remember and live.decision == "accept":
            store.add(f"attempt:{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}", fp)
        return live

    @cached_property
    def _challenge_asr(self):
        """The recogniser that checks a challenge's digits: an English Vosk model constrained to digit words
        (``identity.challenge.VoskDigitRecogniser``) when the user chose Vosk; else Whisper (tiny.en bundled)
        with the challenge forced through it (``identity.challenge.ChallengeRecogniser``) when installed,
        else whatever ``--asr auto`` finds (free transcription); ModelMissingError when there is none."""
        from .errors import ModelMissingError
        from .identity.challenge import ChallengeRecogniser, VoskDigitRecogniser
        from .transcribe.select import make_transcriber

        if self.settings.asr == "vosk":
            try:
                vosk_asr, _ = make_transcriber("vosk", self.settings.asr_model)
                return VoskDigitRecogniser(vosk_asr)
            except ModelMissingError as exc:
                logging.getLogger(__name__).warning("digit challenges: %s; checking them with Whisper instead",
                                                    str(exc).splitlines()[0])
        try:
            return ChallengeRecogniser.bundled()
        except ModelMissingError:
            pass
        try:
            asr, _ = make_transcriber("whisper")
        except ModelMissingError:
            asr, hint = make_transcriber("auto")
            if asr is None:
                raise ModelMissingError(f"checking a challenge needs a speech recogniser: {hint}") from None
        return asr

    def _domain(self):
        """``verify.Domain`` of this store's profiles made by the running encoder (no gallery is built for it:
        an IVF-PQ gallery of a large store takes seconds to train, and verify needs only the sums)."""
        return self._store_cache()[3]

    def _store_cache(self) -> tuple:
        """(state, the gallery built on first use, profiles of another encoder, ``verify.Domain`` of the
        running encoder's profiles) of this store, kept while the store's files are unchanged
        (``ProfileStore.state``, stat only), since reading every profile costs ~1 ms each. The gallery is
        ``identity.gallery.make_gallery``'s (FAISS exact while small, IVF-PQ with exact re-ranking from
        ``APPROX_MIN`` voiceprints), ``.get()`` building it once; a server or any long-lived ``Idme`` then
        identifies and verifies without reading the store per request."""
        from .identity.gallery import make_gallery
        from .identity.profiles import same_encoder
        from .identity.verify import Domain

        state = self.profiles.state()
        cached = getattr(self, "_gallery_cache", None)
        if cached is None or cached[0] != state:
            profiles = self.profiles.all()
            mine = [p for p in profiles if same_encoder(p.encoder, self.encoder_info)]
            others = [p for p in profiles if not same_encoder(p.encoder, self.encoder_info)]

            def build():
                vectors = np.stack([np.asarray(p.centroid, np.float32).reshape(-1) for p in mine]) if mine else \
                    np.zeros((0, self.embedder.dimension), np.float32)
                return make_gallery([p.name for p in mine], vectors, dimension=self.embedder.dimension,
                                    narrowband=[bool(p.narrowband) for p in mine], encoder=dict(self.encoder_info))

            cached = (state, _Lazy(build), others, Domain(mine))
            self._gallery_cache = cached
        return cached

    def identify(self, file_or_samples: Any, top: int = 5, *, sample_rate: int | None = None, gallery: Any = None):
        """Who among the enrolled profiles is speaking in ``file_or_samples`` (open set: decision ``reject``
        = nobody enrolled)? Returns an ``identity.verify.Check`` with up to ``top`` (<= 50) candidates, the
        gallery size and the expected false-positive identification rate (about gallery size x FAR).

        gallery: an ``identity.gallery`` backend keyed by profile name (e.g. ``PgVectorGallery``) to search
        instead of this store's profiles. It must hold this encoder's voiceprints: one that records another
        encoder (``Gallery.encoder``) raises ProfileError; one that records none is taken on trust."""
        from .identity.profiles import check_encoder
        from .identity.verify import check

        samples, native = _test_audio(file_or_samples, sample_rate)
        if gallery is not None:
            if getattr(gallery, "encoder", None) is not None:
                self._check_gallery_encoder(gallery.encoder, "the gallery")
            return self._audit("identify", check(gallery, samples, self.embedder, self.thresholds(),
                                                 native_rate=native, top=top, calibration=self.calibration()))
        _, store, others, domain = self._store_cache()
        for p in others:
            check_encoder(p, self.encoder_info)
        return self._audit("identify", check(store.get(), samples, self.embedder, self.thresholds(),
                                             native_rate=native, top=top, calibration=self.calibration(),
                                             domain=domain))

    def _check_gallery_encoder(self, made_by: dict, what: str) -> None:
        """Raises ProfileError when ``made_by`` (a gallery's recorded encoder) is not the running encoder."""
        from .identity.profiles import same_encoder

        mine = self.encoder_info
        if not same_encoder(made_by, mine):
            raise ProfileError(f"{what} holds voiceprints of encoder {made_by.get('name')} {made_by.get('version')}, "
                               f"not {mine.get('name')} {mine.get('version')}: use --embedder "
                               f"{made_by.get('name')}, or migrate this store into another table")

    # -- the user's own data: audit log, export, forget, retention (issue 14 item 3) --------------------
    def _audit(self, op: str, result):
        """Appends ``result`` (decision, score, threshold, liveness; no audio) to the audit log; returns it."""
        from .session.privacy import record_attempt

        record_attempt(self.sessions, op, result)
        return result

    def audit_refusal(self, name: str, decision: str) -> None:
        """Audits a verify refused before any audio was scored (e.g. an expired or reused challenge)."""
        from types import SimpleNamespace

        self._audit("verify", SimpleNamespace(name=name, decision=decision, score=None, threshold=None))

    def audit(self, name: str | None = None):
        """The verification audit log (``session.privacy.AuditEntry``), oldest first; ``name``'s rows only."""
        from .identity.profiles import check_name
        from .session.privacy import audit_entries

        return audit_entries(self.sessions, None if name is None else check_name(name))

    def export_person(self, name: str, out: str | os.PathLike[str], passphrase: str) -> dict[str, Any]:
        """Writes everything this home holds about ``name`` to ``out`` as an encrypted archive
        (``idme.privacy.archive``; layout in docs/privacy-data.md); returns its manifest."""
        from .privacy.people import export_person

        return export_person(self, name, out, passphrase)

    def open_export(self, archive: str | os.PathLike[str], to: str | os.PathLike[str], passphrase: str) -> list[Path]:
        """Decrypts an ``export_person`` archive into directory ``to``; returns the files written."""
        from .privacy.archive import open_archive

        return open_archive(archive, to, passphrase)

    def forget_person(self, name: str, force: bool = False, drop_text: bool = False) -> dict[str, Any]:
        """Removes ``name``'s profile, kept takes and replay fingerprints, relabels them "Speaker N" in every
        session (their session embeddings deleted), anonymises their audit rows and scrubs the database.
        ``drop_text``: their segments' words are deleted too (the segments stay, as untranscribed speech).
        Their rows leave every linked gallery (``gallery_links``), also when only a gallery still holds them
        (an earlier change it missed). The owner ``me`` only with ``force``. Returns what was done."""
        from .privacy.people import forget_person

        return forget_person(self, name, force, drop_text)

    def prune_sessions(self, older_than_days: float | None = None, now=None):
        """Deletes sessions older than ``older_than_days`` (default ``settings.retention_days``; None = keep
        all); returns a ``session.privacy.Pruned`` or None when no retention applies."""
        from .session.privacy import prune

        days = older_than_days if older_than_days is not None else self.settings.retention_days
        if days is None:
            return None
        result = prune(self.sessions, days, now)
        for sid in result.deleted:
            self.forget_undo(sid)
        return result

    # -- keys: encryption at rest, issue 14 ------------------------------------------------------------
    @property
    def vault(self):
        """The data key of this home and the file encryption under it (``idme.vault.Vault``)."""
        from .vault import vault_for

        return vault_for(self.home)

    def keys_status(self):
        """``idme.vault.KeyStatus``: key id, wrappings, keyring backend, encrypted / plaintext file counts."""
        return self.vault.status()

    def keys_rotate(self):
        """A new data key, every encrypted file re-encrypted under it (crash-safe; rerun finishes)."""
        return self.vault.rotate()

    def keys_set_passphrase(self, new: str | None = None):
        """Adds or changes the passphrase wrapping (``new``, else $IDME_NEW_PASSPHRASE, else a prompt)."""
        return self.vault.set_passphrase(new)

    # -- evaluation ----------------------------------------------------------------------------------
    def score_trials(self, lists: Sequence[Path], test_seconds: float | None = None,
                     cache_dir: Path | None = None, progress=None) -> tuple[np.ndarray, np.ndarray]:
        """(target, non-target) scores of trial lists, through the enrollment audio path."""
        from .eval.verification import score_lists

        return score_lists(lists, self.embedder, cache_dir or self.home / "cache" / "embeddings",
                           test_seconds, progress)

    def eval_trials(self, lists: Sequence[Path], test_seconds: float | None = None, cache_dir: Path | None = None,
                    progress=None) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """EER, minDCF and FAR/FRR at the thresholds in force; returns (report, target, non-target scores)."""
        from .eval.verification import verification_report

        tgt, non = self.score_trials(lists, test_seconds, cache_dir, progress)
        th = self.thresholds()
        report = {"trials": [str(p) for p in lists], "encoder": {"name": self.embedder.name,
                                                                  "version": self.embedder.version},
                  "test_seconds": test_seconds, **verification_report(tgt, non, th)}
        return report, tgt, non

    def eval_meetings(self, dirs: Sequence[Path], hyp_dir: Path | None = None, say=None,
                      segmenter: str = "webrtc") -> dict[str, Any]:
        """Labels and scores meetings / RTTM sets as ``idme listen --file`` would label them.

        segmenter: "webrtc" (default) or "pyannote" (overlap-aware file mode, ``idme.segment.pyannote``)."""
        from .eval.meetings import evaluate

        return evaluate(dirs, self.embedder, self.thresholds(), hyp_dir, say, segmenter=_check_segmenter(segmenter),
                        calibration=self.calibration())

    def label_file(self, path: str | os.PathLike[str], segmenter: str = "pyannote") -> list[dict[str, Any]]:
        """Labels a whole recording with this home's profiles and thresholds: ``listen --json`` event dicts
        (final labels, no text). With "pyannote" events of different speakers may overlap in time."""
        from .eval.meetings import label_file

        return label_file(Path(path), self.embedder, self.profiles.all(), self.thresholds(),
                          _check_segmenter(segmenter), self.calibration())

    def calibrate(self, lists: Sequence[Path], far: float = 0.001, test_seconds: float | None = None,
                  cache_dir: Path | None = None, dry_run: bool = False, progress=None):
        """Thresholds at false-accept rate ``far`` on trial lists; saved (keyed by encoder name@version)
        unless ``dry_run``. Returns (Calibration, path written or None)."""
        from .identity.thresholds import DEFAULTS, save
        from .eval.verification import calibrate

        tgt, non = self.score_trials(lists, test_seconds, cache_dir, progress)
        emb = self.embedder
        base = DEFAULTS.get(emb.name) or DEFAULTS["campplus"]
        crop = "" if test_seconds is None else f", test side cut to {test_seconds:g} s"
        result = calibrate(tgt, non, self.thresholds(), base, far, ", ".join(map(str, lists)) + crop)
        path = None if dry_run else save(emb.name, result.new, self.home, version=emb.version)
        return result, path

    def migrate_profiles(self, url: str, table: str = "idme_voiceprints", prune: bool = False):
        """Copies every profile's voiceprint into a PostgreSQL + pgvector gallery (``identity.gallery.migrate``)
        and checks the count; the local store is left as it is. prune: also delete the table's rows of people
        this store no longer has. The gallery is then linked to the home (``gallery_links``): every later
        change of the store is mirrored into it (``unlink_gallery`` stops that). Raises ProfileError for a
        profile made by another encoder, GalleryError for a bad URL, a server that does not answer, one
        without pgvector, or a table of another encoder."""
        from .identity.gallery import PgVectorGallery, migrate
        from .identity.profiles import check_encoder

        profiles = self.profiles.all()
        for p in profiles:
            check_encoder(p, self.encoder_info)
        from .identity.links import redact

        key = (redact(url), table)
        stored = next((l for l in self.gallery_links.all() if l.key == key), None)
        if stored is not None and redact(url) == url:  # the repair a message printed: the stored password
            url = stored.url
        done = migrate(profiles, url, self.embedder.dimension, table, encoder=self.encoder_info, prune=prune)
        # From now on every change of the store reaches the gallery (identity.links): a person deleted or
        # forgotten here leaves it too. Every profile was just copied; deletions it had pending are made now
        # (with --prune, every row of someone the store does not have went already).
        snapshot = stored.pending if stored is not None else ()
        pending = [n for n in snapshot if not self.profiles.exists(n)]
        if pending:
            with PgVectorGallery(url, self.embedder.dimension, table=table, create=False) as pg:
                pg.remove(pending)
        self.gallery_links.add(url, table, self.embedder.dimension, done=snapshot)
        self.mirror.in_step(key)
        return done

    def open_gallery(self, url: str, table: str = "idme_voiceprints"):
        """The PostgreSQL + pgvector gallery ``migrate_profiles`` filled (``identity.gallery.PgVectorGallery``,
        to pass to ``identify(gallery=...)`` and close after). No table is created (a table of an earlier idme
        gets the columns and side tables it lacks): raises GalleryError for a bad URL, a server that does not
        answer or lacks pgvector, or a table that is not there, and ProfileError for a table that records
        another encoder than the running one, or none (made before galleries recorded it: migrate again)."""
        from .identity.gallery import PgVectorGallery, check_url

        check_url(url)
        pg = PgVectorGallery(url, self.embedder.dimension, table=table, create=False)
        try:
            if pg.encoder is None:
                raise ProfileError(f"table {table} does not record which encoder made its voiceprints: run `idme "
                                   f"profiles migrate --to URL --table {table}` again to record it")
            self._check_gallery_encoder(pg.encoder, f"table {table}")
        except ProfileError:
            pg.close()
            raise
        return pg

    def calibrate_quality(self, data: Path, far: float = 0.005, cache_dir: Path | None = None,
                          dry_run: bool = False, out: Path | None = None, command: str = "", progress=None,
                          swap: bool = False, score_norm: bool = False):
        """Fits the quality-aware calibration (``eval.calibration``) on degraded trials built from ``data``
        (../shared/data: training and held-out speakers), its LLR threshold at FAR ``far`` in every training
        condition. Writes ``out`` or ``<home>/calibration.json`` (0600) unless ``dry_run``.
        Returns (QualityFit, path written or None)."""
        import json

        from ._fs import atomic_write
        from .errors import IdmeError
        from .eval.calibration import HOME_FILE, fit_on_data

        if not 0.0 < far < 1.0:
            raise IdmeError(f"the target FAR is a fraction strictly between 0 and 1 (0.01 = 1%), got {far:g}")
        result = fit_on_data(Path(data), self.embedder, cache_dir or self.home / "cache" / "calibration", far,
                             command=command, progress=progress, thresholds=self.thresholds(), swap=swap,
                             score_norm=score_norm)
        if dry_run:
            return result, None
        path = Path(out) if out is not None else self.home / HOME_FILE
        mode = 0o600 if out is None else 0o644
        norm = result.calibration.norm
        if norm is not None:  # the cohort first: a calibration naming a missing cohort would not load
            atomic_write(path.parent / norm.file, norm.to_bytes(), mode=mode)
        atomic_write(path, (json.dumps(result.calibration.to_dict(), indent=1) + "\n").encode(), mode=mode)
        return result, path


def _test_audio(file_or_samples: Any, sample_rate: int | None) -> tuple[np.ndarray, int | None]:
    """A test utterance as (16 kHz float32 samples (n,), the rate it was recorded at or None).

    A path is decoded and resampled by ``FileSource``; an ``AudioFrame`` carries its rate; a bare array needs
    ``sample_rate`` (an array without its rate is never guessed at)."""
    from .audio.frames import TARGET_RATE_HZ, AudioFrame
    from .audio.resample import StreamResampler

    if isinstance(file_or_samples, (str, os.PathLike)):
        from .audio.sources import FileSource

        with FileSource(file_or_samples) as src:
            native = src.native_rate
            parts = [f.samples for f in src.frames()]
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), native
    if isinstance(file_or_samples, AudioFrame):
        samples, rate = file_or_samples.samples, file_or_samples.sample_rate
    else:
        if sample_rate is None:
            raise AudioError("raw samples need their sample_rate (e.g. sample_rate=16000)")
        samples, rate = np.asarray(file_or_samples, np.float32), int(sample_rate)
    if samples.ndim != 1:
        raise AudioError(f"expected mono samples of shape (n,), got shape {samples.shape}")
    if rate != TARGET_RATE_HZ and len(samples):
        rs = StreamResampler(rate, TARGET_RATE_HZ)
        samples = np.concatenate([rs.process(samples.astype(np.float32)), rs.flush()])
    return samples.astype(np.float32), rate

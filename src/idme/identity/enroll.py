"""Enrollment: turn takes of one person's speech into a profile, behind a quality gate.

A take is rejected, with a message that says how to redo it, when it has too little net speech (after VAD
trimming), when it is clipped, or when its voice does not match the person's other takes (someone else
speaking, or heavy noise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.frames import TARGET_RATE_HZ
from ..embed.base import Embedder
from ..errors import EnrollmentError, ProfileError
from ..vad import VadOptions, speech_only
from .profiles import NARROWBAND_MAX_HZ, OWNER, Profile, ProfileStore, check_encoder, check_name
from .thresholds import Thresholds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QualityGate:
    """What a take needs to be accepted."""

    #: Net speech after VAD trimming. CAM++ EER on LibriSpeech test-other is 0.89% with 1 s of test speech
    #: and 6.2% at 0.5 s (docs/thresholds.md); 1.5 s leaves margin and accepts a short spoken sentence.
    min_speech_s: float = 1.5
    #: Samples at or above this magnitude count as clipped (full scale is 1.0).
    clip_level: float = 0.999
    #: Largest share of clipped samples in the take's speech; 0.1% is a few clicks, more is distortion.
    max_clipped: float = 0.001


@dataclass(frozen=True)
class TakeReport:
    """Quality of one take: net speech (s), share of clipped samples, level (dBFS of speech)."""

    source: str
    speech_s: float
    clipped: float
    level_dbfs: float
    #: Sample rate the take was recorded at (before resampling to 16 kHz), if known.
    native_rate: int | None = None
    #: Estimated signal-to-noise ratio of the whole take, dB (``identity.verify.estimate_snr_db``).
    snr_db: float | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "speech_s": round(self.speech_s, 2), "clipped": round(self.clipped, 5),
                "level_dbfs": round(self.level_dbfs, 1), "native_rate": self.native_rate,
                "snr_db": None if self.snr_db is None else round(self.snr_db, 1)}


def check_take(samples: np.ndarray, source: str, gate: QualityGate = QualityGate(),
               vad: VadOptions = VadOptions(), native_rate: int | None = None) -> tuple[np.ndarray, TakeReport]:
    """Trims a take (16 kHz float32 (n,)) to its speech and checks it; raises EnrollmentError if unusable."""
    speech = speech_only(samples, vad)
    speech_s = len(speech) / TARGET_RATE_HZ
    clipped = float(np.mean(np.abs(speech) >= gate.clip_level)) if len(speech) else 0.0
    level = float(20 * np.log10(np.sqrt(np.mean(speech ** 2)) + 1e-10)) if len(speech) else -200.0
    from .verify import estimate_snr_db

    rep = TakeReport(source, speech_s, clipped, level, native_rate, estimate_snr_db(samples))
    if speech_s < gate.min_speech_s:
        raise EnrollmentError(
            f"{source}: only {speech_s:.1f} s of speech (need {gate.min_speech_s:.1f} s); record again, "
            "speaking continuously, closer to the microphone")
    if clipped > gate.max_clipped:
        raise EnrollmentError(
            f"{source}: {100 * clipped:.1f}% of the speech is clipped (distorted); record again with the "
            "input level lower or further from the microphone")
    return speech, rep


def read_takes(paths: list) -> tuple[list[tuple[str, np.ndarray]], list[int]]:
    """Reads enrollment recordings: ([(path, 16 kHz float32 samples)], [native sample rate of each])."""
    from ..audio.sources import FileSource

    takes, rates = [], []
    for p in paths:
        with FileSource(p) as src:
            rates.append(src.native_rate)
            takes.append((str(p), np.concatenate([f.samples for f in src.frames()] or [np.zeros(0, np.float32)])))
    return takes, rates


def acceptance_bar(name: str, thresholds: Thresholds, narrowband: bool) -> float:
    """The score a segment needs to be labelled as ``name``: ``me`` for the owner, ``enrolled`` for others,
    ``narrowband`` for telephone-rate profiles (when set)."""
    if narrowband and thresholds.narrowband is not None:
        return thresholds.narrowband
    return thresholds.me if name == OWNER else thresholds.enrolled


def check_consistency(embs: np.ndarray, sources: list[str], bar: float, name: str,
                      existing: np.ndarray | None = None) -> None:
    """Each new take (rows of ``embs``, unit vectors) must score at least ``bar`` against the mean of all the
    other takes (``existing`` ones included); raises EnrollmentError naming the take that does not."""
    pool = embs if existing is None or not len(existing) else np.vstack([existing, embs])
    if len(pool) < 2:
        return
    offset = 0 if existing is None else len(existing)
    for i, source in enumerate(sources):
        others = np.delete(pool, offset + i, axis=0).mean(axis=0)
        score = float(embs[i] @ (others / max(np.linalg.norm(others), 1e-12)))
        if score < bar:
            raise EnrollmentError(
                f"{source}: the voice does not match the other takes (similarity {score:.2f} < {bar:.2f}); "
                f"make sure only {('you' if name == OWNER else name)} speak(s) in every take, in a quiet room, "
                "and record it again")


def keep_audio(store: ProfileStore, name: str, takes: list[tuple[str, np.ndarray]]) -> list[Path]:
    """Saves enrollment takes (16 kHz float32) as 16-bit WAVs, mode 0600, encrypted under the home's data key
    (``idme.vault``, identity ``profiles.take_identity`` of the profile's directory), for a later ``reembed``."""
    import io

    import soundfile as sf

    from .._fs import atomic_write
    from .profiles import take_identity

    adir = store.audio_dir(name)
    start = len(list(adir.glob("take_*.wav")))
    paths = []
    for k, (_, samples) in enumerate(takes):
        buf = io.BytesIO()
        sf.write(buf, samples, TARGET_RATE_HZ, format="WAV", subtype="PCM_16")
        path = adir / f"take_{start + k + 1:03d}.wav"
        atomic_write(path, store.vault.seal(buf.getvalue(), take_identity(adir.parent.name)), mode=0o600)
        paths.append(path)
    return paths


def read_kept_take(store: ProfileStore, path: Path) -> np.ndarray:
    """A take ``keep_audio`` saved, decrypted: 16 kHz float32 (n,). A plaintext WAV kept before encryption
    (issue 14) reads as it is."""
    import io

    import soundfile as sf

    from ..errors import AudioError
    from .profiles import take_identity

    try:
        samples, rate = sf.read(io.BytesIO(store.vault.read(path, take_identity(Path(path).parent.parent.name))),
                                dtype="float32",
                                always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: kept enrollment audio is unreadable ({exc}); enrol again") from None
    if rate != TARGET_RATE_HZ:
        raise AudioError(f"{path}: kept enrollment audio is at {rate} Hz, not {TARGET_RATE_HZ}; enrol again")
    return samples.mean(axis=1).astype(np.float32)


def reembed(store: ProfileStore, embedder: Embedder, name: str, thresholds: Thresholds,
            gate: QualityGate = QualityGate(), vad: VadOptions = VadOptions()) -> Profile:
    """Rebuilds profile ``name`` from its kept enrollment audio with ``embedder``, behind the enrollment gate.

    Refuses (ProfileError) unless every take of the profile has kept audio: re-embedding only some of them
    would silently drop the others (review 2026-12-01 §1.10). Nothing is saved unless every take passes.
    """

    profile = store.get(name)
    adir = store.profile_dir(profile.name) / "audio"
    wavs = sorted(adir.glob("take_*.wav")) if adir.is_dir() else []
    n_takes = max(len(profile.takes), len(profile.embeddings))
    enrol_again = f"enrol again with `idme enroll{'' if profile.name == OWNER else ' --name ' + profile.name} --keep-audio`"
    if not wavs:
        raise ProfileError(f"profile '{profile.name}' has no kept audio; {enrol_again}")
    if len(wavs) != n_takes:
        raise ProfileError(f"profile '{profile.name}' has {n_takes} takes but kept audio for {len(wavs)}; "
                           f"re-embedding would drop the others: {enrol_again}")
    embs = []
    for w in wavs:
        speech, _ = check_take(read_kept_take(store, w), str(w), gate, vad)
        embs.append(embedder.embed(speech))
    embs_a = np.stack(embs).astype(np.float32)
    check_consistency(embs_a, [str(w) for w in wavs],
                      acceptance_bar(profile.name, thresholds, profile.narrowband), profile.name)
    new = Profile(profile.name, {"name": embedder.name, "version": embedder.version,
                                 "dimension": embedder.dimension}, embs_a, profile.takes, profile.created_at)
    store.save(new)
    return new


def profile_from_speaker(embeddings: np.ndarray, durations: np.ndarray | None, name: str,
                         thresholds: Thresholds, min_reliable_s: float = 1.0,
                         n_takes: int = 3) -> tuple[np.ndarray, list[dict]]:
    """Voiceprint takes for ``idme name``: a session speaker's segment embeddings (n, d), in time order,
    become up to ``n_takes`` duration-weighted means of consecutive segments, behind the enrollment gate.

    durations: seconds behind each embedding; segments shorter than ``min_reliable_s`` are dropped (their
        embeddings are noisy). None (sessions saved before durations were kept): equal weights.
    Returns (takes float32 (k, d), takes metadata). Raises EnrollmentError when too little reliable speech
    is left or when the pieces disagree (the cluster may hold two people).
    """
    embs = np.asarray(embeddings, np.float32)
    w = np.ones(len(embs), np.float32) if durations is None else np.asarray(durations, np.float32)
    keep = w >= (min_reliable_s if durations is not None else 0.0)
    embs, w = embs[keep], w[keep]
    if not len(embs):
        raise EnrollmentError(f"no segment of {name!r}'s speaker is {min_reliable_s:g} s or longer; "
                              "enrol them from a recording instead (`idme enroll --name NAME --file F`)")
    bar = acceptance_bar(name, thresholds, False)
    embs, w = _dominant_voice(embs, w, bar, name)
    k = int(min(n_takes, len(embs)))
    # Consecutive pieces of about equal speech: each is a take recorded at a different time of the session.
    edges = np.searchsorted(np.cumsum(w), np.linspace(0, w.sum(), k + 1)[1:-1], side="left")
    takes, meta = [], []
    for part_e, part_w in zip(np.split(embs, edges + 1), np.split(w, edges + 1)):
        if not len(part_e):
            continue
        mean = (part_e * part_w[:, None]).sum(axis=0)
        takes.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        meta.append({"source": "named from a session speaker", "segments": int(len(part_e)),
                     "speech_s": round(float(part_w.sum()), 2) if durations is not None else None})
    takes_a = np.stack(takes).astype(np.float32)
    check_consistency(takes_a, [f"part {i + 1} of the speaker's segments" for i in range(len(takes_a))],
                      bar, name)
    return takes_a, meta


#: Share of a session speaker's reliable speech that must agree on one voice for ``idme name`` to build a
#: voiceprint from it after leaving out the segments that do not (``_dominant_voice``).
DOMINANT_SHARE = 2 / 3


def _dominant_voice(embs: np.ndarray, w: np.ndarray, bar: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The segments (unit rows of ``embs``, ``w`` seconds each) of a session speaker that agree on one voice.

    Live labelling now and then files a short turn of someone else under a speaker (a turn cut by the end of
    the stream, a stray folded into its neighbour). One such segment would make ``check_consistency`` refuse
    the whole speaker, so the segment that scores lowest against the duration-weighted mean of the others is
    left out while it scores below ``bar`` (ties: the shorter first), as long as the rest keeps
    ``DOMINANT_SHARE`` of the speech. Two voices in equal measure stay together here (each scores about
    0.7 against a mean of both) and are refused by ``check_consistency`` on the consecutive parts.
    """
    keep = np.ones(len(embs), bool)
    total = np.einsum("n,nd->d", w, embs)
    while keep.sum() > 1:
        idx = np.flatnonzero(keep)
        rest = total[None, :] - w[idx, None] * embs[idx]
        scores = np.einsum("nd,nd->n", embs[idx], rest) / np.maximum(np.linalg.norm(rest, axis=1), 1e-12)
        worst = idx[np.lexsort((w[idx], scores))[0]]
        if scores[idx == worst][0] >= bar:
            break
        keep[worst] = False
        total = total - w[worst] * embs[worst]
    kept_s, all_s = float(w[keep].sum()), float(w.sum())
    if kept_s < DOMINANT_SHARE * all_s:
        raise EnrollmentError(
            f"the speaker's segments hold more than one voice (only {kept_s:.1f} s of {all_s:.1f} s agree); "
            f"name a speaker whose speech is only {name}'s, or enrol {name} from a recording instead "
            "(`idme enroll --name NAME --file F`)")
    if not keep.all():
        log.info("naming %s: left out %d segment(s), %.1f s, that do not match the speaker's main voice",
                    name, int((~keep).sum()), all_s - kept_s)
    return embs[keep], w[keep]


#: Length of the windows a long take is cut into to check that it holds one voice (issue 10): 4 s of
#: speech gives CAM++ embeddings that agree at 0.78-0.92 (leave-one-out) within one LibriSpeech reader,
#: while every meetings-dev recording has a window below 0.30 against the rest of the take.
CONSISTENCY_WINDOW_S = 4.0
#: Two takes this similar are the same recording enrolled twice (a re-read of a file gives ~1.0).
DUPLICATE_SCORE = 0.999


def check_single_voice(speech: np.ndarray, source: str, embedder: Embedder, bar: float, name: str,
                       window_s: float = CONSISTENCY_WINDOW_S) -> None:
    """A take's speech (16 kHz float32, (n,)) cut into windows of ``window_s``: each window must score at
    least ``bar`` against the mean of the others, or the take holds several voices (a meeting recording)
    and EnrollmentError names it. Takes shorter than two windows are checked only against other takes."""
    n = int(window_s * TARGET_RATE_HZ)
    if len(speech) < 2 * n:
        return
    embs = np.stack([embedder.embed(speech[i:i + n]) for i in range(0, len(speech) - n + 1, n)]).astype(np.float32)
    embs /= np.maximum(np.linalg.norm(embs, axis=1, keepdims=True), 1e-12)
    for i in range(len(embs)):
        others = np.delete(embs, i, axis=0).mean(axis=0)
        score = float(embs[i] @ (others / max(float(np.linalg.norm(others)), 1e-12)))
        if score < bar:
            who = "you" if name == OWNER else name
            raise EnrollmentError(
                f"{source}: more than one voice in this take (speech at {i * window_s:.0f}-{(i + 1) * window_s:.0f} s "
                f"scores {score:.2f} < {bar:.2f} against the rest); enrol from a recording of {who} alone")


def check_distinct(embs: np.ndarray, name: str, others: list[Profile], thresholds: Thresholds) -> None:
    """The new takes' voiceprint must not be accepted as another profile (the same voice under two names
    would split one person's labels between them); raises ProfileError naming the profile it matches."""
    centroid = embs.mean(axis=0)
    centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
    for p in others:
        if p.name == name:
            continue
        score = float(p.centroid @ centroid)
        if score >= acceptance_bar(p.name, thresholds, p.narrowband):
            hint = "yourself (Me)" if p.name == OWNER else f"'{p.name}'"
            raise ProfileError(
                f"this voice already matches {hint} (similarity {score:.2f}); if it is the same person enrol "
                f"into that profile, otherwise pass --force")


def enroll(store: ProfileStore, embedder: Embedder, name: str, takes: list[tuple[str, np.ndarray]],
           thresholds: Thresholds, gate: QualityGate = QualityGate(),
           vad: VadOptions = VadOptions(),
           native_rates: list[int | None] | None = None, force: bool = False,
           replace: bool = False) -> tuple[Profile, list[TakeReport]]:
    """Checks and embeds ``takes`` ([(source, 16 kHz float32 samples)]) and adds them to profile ``name``.

    native_rates: the rate each take was recorded at (marks telephone-rate profiles, see Thresholds).

    Every take must pass the gate and match the others (and the existing profile, when re-enrolling):
    its cosine with the mean of all the other takes must reach the bar a meeting segment must clear to be
    labelled as this person (``me`` for the owner, ``enrolled`` for others, ``narrowband`` for telephone-rate
    takes); a long take must also hold one voice throughout (``check_single_voice``), the same recording is
    not added twice, and unless ``force`` the voice must not already match another profile
    (``check_distinct``). Nothing is saved unless all takes pass. ``replace``: the new takes replace the
    profile's old ones (and its kept audio) instead of joining them; the old version is kept by
    ``ProfileStore.backup``.
    """
    name = check_name(name)
    if not takes:
        raise EnrollmentError("no enrollment audio given: pass --file or record with the microphone")
    encoder = {"name": embedder.name, "version": embedder.version, "dimension": embedder.dimension}
    existing = store.get(name) if store.exists(name) else None
    if existing is not None and not replace:
        check_encoder(existing, encoder)
    previous, existing = existing, (None if replace else existing)
    embs, reports = [], []
    rates = native_rates or [None] * len(takes)
    narrow = bool(rates) and all(r is not None and r <= NARROWBAND_MAX_HZ for r in rates)
    bar = acceptance_bar(name, thresholds, narrow)
    for (source, samples), rate in zip(takes, rates):
        speech, rep = check_take(samples, source, gate, vad, rate)
        check_single_voice(speech, source, embedder, bar, name)
        embs.append(embedder.embed(speech))
        reports.append(rep)
    embs_a = np.stack(embs).astype(np.float32)
    pool = embs_a if existing is None else np.vstack([existing.embeddings, embs_a])
    for i, rep in enumerate(reports):
        j = i + len(pool) - len(embs_a)
        if any(float(pool[k] @ pool[j]) >= DUPLICATE_SCORE for k in range(j)):
            raise EnrollmentError(f"{rep.source}: this recording is already enrolled in '{name}'; "
                                  "give a different take")
    check_consistency(embs_a, [r.source for r in reports], bar, name,
                      existing=None if existing is None else existing.embeddings)
    if not force:
        same_encoder = [p for p in (store.get(n) for n in store.names() if n != name)
                        if (p.encoder.get("name"), p.encoder.get("version")) == (encoder["name"], encoder["version"])]
        check_distinct(embs_a, name, same_encoder, thresholds)
    takes_meta = [r.to_dict() for r in reports]
    if replace and previous is not None:
        store.backup(name)
        audio = store.profile_dir(previous.name) / "audio"
        for wav in sorted(audio.glob("take_*.wav")) if audio.is_dir() else []:
            wav.unlink()  # takes of the old voiceprint: a later reembed must not mix them in
        profile = Profile(name, encoder, embs_a, takes_meta, previous.created_at)
        store.save(profile)
    else:
        profile = store.add(name, embs_a, encoder, takes_meta)
    log.info("enrolled %d take(s) into profile %s (%d in all)", len(embs), name, len(profile.embeddings))
    return profile, reports

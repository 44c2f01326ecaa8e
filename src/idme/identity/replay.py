"""Replay defence: a band-energy-sign fingerprint of a recording, and the per-profile store of fingerprints of
enrollment takes and accepted attempts (issue 14).

A replay is a copy of audio idme already heard (an enrollment take, an accepted attempt) played back,
perhaps re-encoded, resampled to 8 kHz, with noise, a gain change or room echo. A *new* recording of the same
person saying the same words is not a copy: its fine spectro-temporal detail differs.

The fingerprint (after Haitsma & Kalker 2002, the Philips audio fingerprint): the audio is brought to 8 kHz
and only the 300-3400 Hz telephone band is kept, so a copy that went through an 8 kHz channel keeps all of
it; per 8 ms frame the energies of N_BANDS log-spaced bands give N_BANDS - 1 signs, the sign of how the
difference between neighbouring bands changes over LAG_FRAMES frames. Gain cancels out of every sign;
re-encoding keeps nearly all of them; noise 15 dB down and room echo flip a part. Frames more than
SPEECH_RANGE_DB below the recording's loudest carry no signs (silence, pauses). Two recordings are compared
at every time offset where their speech overlaps by at least MIN_OVERLAP of the shorter: ``match_score`` is
the best mean sign agreement (+1 for each equal sign, -1 for each opposite), 1.0 for an identical copy and
near 0 for unrelated audio.

Measured (bench/liveness.py, all six FSDD speakers, 259 copies, 240 new answers): copies through mp3, 8 kHz,
+15 dB noise, gain, a room impulse response and all of them chained score >= 0.148 (median 0.97); new
recordings of the same speaker score <= 0.090. REPLAY_THRESHOLD sits between. A copy edited in time (pauses
cut or stretched, digits spliced in another order) loses the common offset and is not caught.

Stored per profile in ``profiles/<name>/fingerprints.npz`` (0600, written atomically, AES-256-GCM under the
home's data key, :mod:`idme.vault`): the signs of each recording, never its audio, labelled by where it came from.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StoreError
# The file (FILE_NAME) is sealed bound to its profile directory (``identity(dir_name)``, issue 14).
from .profiles import FINGERPRINT_FILE as FILE_NAME
from .profiles import LEGACY_FINGERPRINT_IDENTITY as LEGACY_IDENTITY
from .profiles import fingerprint_identity as identity
from .verify import Check

logger = logging.getLogger(__name__)

#: The fingerprint is computed at 8 kHz: an 8 kHz copy of a 16 kHz take then carries the same band.
RATE_HZ = 8000
#: Telephone band kept: a copy through an 8 kHz channel (or a phone speaker) still holds it.
BAND_LO_HZ, BAND_HI_HZ = 300.0, 3400.0
#: 32 ms frames, 8 ms hop at 8 kHz.
N_FFT, HOP = 256, 64
#: Log-spaced bands across the telephone band (N_BANDS - 1 signs per frame).
N_BANDS = 17
#: Frames between the two band differences a sign compares (2 = 16 ms: echo smears less than that).
LAG_FRAMES = 2
#: Frames this far (dB) below the loudest frame are silence: no signs.
SPEECH_RANGE_DB = 30.0
#: Offsets count only where the two recordings' speech frames overlap by this share of the shorter's
#: (a copy overlaps fully; short partial overlaps of unrelated audio agree by chance) ...
MIN_OVERLAP = 0.8
#: ... and by at least this many frames (0.24 s).
MIN_FRAMES = 30
#: A score at or above this is a replay. bench/liveness.py: degraded copies >= 0.148, new recordings of
#: the same speaker <= 0.090 (a later run, other answers: copies >= 0.155, one new answer 0.120: a thin margin).
REPLAY_THRESHOLD = 0.11
_EDGES_HZ = np.geomspace(BAND_LO_HZ, BAND_HI_HZ, N_BANDS + 1)


@dataclass(frozen=True)
class Fingerprint:
    """Signs of one recording: int8 (frames, N_BANDS - 1) in {-1, 0, +1}; a frame of zeros is silence."""

    signs: np.ndarray

    def __len__(self) -> int:
        return len(self.signs)

    @property
    def speech_frames(self) -> np.ndarray:
        """float64 (frames,): 1 where the frame carries signs."""
        return np.any(self.signs != 0, axis=1).astype(np.float64)


def fingerprint(samples: np.ndarray, sample_rate: int = 16000) -> Fingerprint:
    """The fingerprint of ``samples`` float32 (n,) at ``sample_rate`` (any rate; compared at 8 kHz).
    Silence or audio shorter than a few frames gives an empty fingerprint."""
    import soxr

    empty = Fingerprint(np.zeros((0, N_BANDS - 1), np.int8))
    x = np.asarray(samples, np.float32).reshape(-1)
    if sample_rate != RATE_HZ and len(x):
        x = soxr.resample(x, sample_rate, RATE_HZ, quality="HQ").astype(np.float32)
    if len(x) < N_FFT + LAG_FRAMES * HOP:
        return empty
    n = 1 + (len(x) - N_FFT) // HOP
    frames = x[np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]] * np.hanning(N_FFT).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freq = np.arange(power.shape[1]) * RATE_HZ / N_FFT
    bands = np.stack([power[:, (freq >= lo) & (freq < hi)].sum(axis=1)
                      for lo, hi in zip(_EDGES_HZ[:-1], _EDGES_HZ[1:])], axis=1)
    total_db = 10 * np.log10(bands.sum(axis=1) + 1e-12)
    if not np.isfinite(total_db).any() or total_db.max() <= -100:
        return empty
    diff = np.diff(np.log(bands + 1e-10), axis=1) * -1  # (frames, N_BANDS - 1): band m minus band m + 1
    signs = np.sign(diff[LAG_FRAMES:] - diff[:-LAG_FRAMES]).astype(np.int8)
    speech = total_db[LAG_FRAMES:] >= total_db.max() - SPEECH_RANGE_DB
    return Fingerprint(signs * speech[:, None].astype(np.int8))


def match_score(attempt: Fingerprint, reference: Fingerprint) -> float:
    """Best mean sign agreement of ``attempt`` and ``reference`` over time offsets whose speech overlaps by
    MIN_OVERLAP of the shorter (and MIN_FRAMES): 1.0 = identical, about 0 = unrelated, 0.0 = not comparable."""
    from scipy.signal import correlate

    ma, mr = attempt.speech_frames, reference.speech_frames
    if len(ma) == 0 or len(mr) == 0:
        return 0.0
    need = max(MIN_OVERLAP * min(ma.sum(), mr.sum()), MIN_FRAMES)
    count = correlate(mr, ma, mode="full", method="fft")
    ok = count >= need - 0.5
    if not ok.any():
        return 0.0
    a, r = attempt.signs.astype(np.float64), reference.signs.astype(np.float64)
    agree = sum(correlate(r[:, m], a[:, m], mode="full", method="fft") for m in range(a.shape[1]))
    return float(np.max(agree[ok] / (count[ok] * a.shape[1])))


@dataclass(frozen=True)
class ReplayMatch:
    """The closest stored recording to an attempt: its ``label``, the ``score`` and whether it is a replay."""

    label: str | None
    score: float
    threshold: float

    @property
    def replay(self) -> bool:
        return self.label is not None and self.score >= self.threshold


class FingerprintStore:
    """Fingerprints of one profile's enrollment takes and accepted attempts, in ``profile_dir``/FILE_NAME.

    The file is an npz of ``signs`` int8 (frames, N_BANDS - 1) concatenated over recordings, ``offsets``
    (where each recording starts) and ``labels`` (e.g. "enroll:take1.wav", "attempt:2026-12-01T20:00Z")."""

    def __init__(self, profile_dir: str | Path) -> None:
        self.path = Path(profile_dir) / FILE_NAME

    @property
    def _vault(self):
        """The home's key (``<home>/profiles/<name>/`` -> ``<home>``); see :mod:`idme.vault`."""
        from ..vault import vault_for

        return vault_for(self.path.parent.parent.parent)

    def load(self) -> list[tuple[str, Fingerprint]]:
        """The stored (label, fingerprint) pairs; none when there is no file yet."""
        if not self.path.exists():
            return []
        try:
            raw = self._vault.read(self.path, identity(self.path.parent.name))  # plaintext from before issue 14 reads as it is
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                signs, offsets, labels = z["signs"], z["offsets"], z["labels"]
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"cannot read replay fingerprints {self.path} ({exc}); delete the file to start "
                             "over (replays of earlier recordings are then no longer caught)") from None
        bounds = [int(o) for o in offsets] + [len(signs)]
        return [(str(labels[i]), Fingerprint(signs[bounds[i]:bounds[i + 1]])) for i in range(len(labels))]

    def add(self, label: str, fp: Fingerprint) -> None:
        """Appends ``fp`` under ``label`` and rewrites the file atomically (0600), encrypted."""
        items = self.load() + [(label, fp)]
        buf = io.BytesIO()
        np.savez(buf, signs=np.concatenate([f.signs for _, f in items]).astype(np.int8).reshape(-1, N_BANDS - 1),
                 offsets=np.cumsum([0] + [len(f) for _, f in items[:-1]]).astype(np.int64),
                 labels=np.asarray([lab for lab, _ in items], dtype=str))
        if not self.path.parent.is_dir():
            raise StoreError(f"no profile directory {self.path.parent}: enrol the profile first")
        try:
            self._vault.write(self.path, buf.getvalue(), identity(self.path.parent.name))  # AES-256-GCM, atomic, 0600
        except OSError as exc:
            raise StoreError(f"cannot write {self.path} ({exc})") from None

    def closest(self, fp: Fingerprint, threshold: float | None = None) -> ReplayMatch:
        """The stored recording ``fp`` matches best (label None when nothing is stored), held to
        ``threshold`` (default REPLAY_THRESHOLD)."""
        threshold = REPLAY_THRESHOLD if threshold is None else threshold
        best: tuple[str | None, float] = (None, 0.0)
        for label, ref in self.load():
            s = match_score(fp, ref)
            if best[0] is None or s > best[1]:
                best = (label, s)
        return ReplayMatch(best[0], best[1], threshold)


# -- challenge content and the liveness decision ----------------------------------------------------------

#: Decisions liveness adds to verify's (accept / reject / not_enough_speech / not_enrolled).
REPLAY, WRONG_CONTENT = "replay", "wrong_content"
#: Digits in a challenge ``idme verify --challenge`` issues: 6 random digits, 10^6 possible answers.
CHALLENGE_DIGITS = 6
#: Edits (insert / delete / substitute one digit) allowed between the challenge and what the recogniser
#: heard. Measured with Whisper tiny.en on 240 FSDD answers (bench/liveness.py): within 0 edits 81.7% of
#: genuine answers, 1 edit 91.7%, 2 edits 94.2%; one speaker (nicolas) makes most of the misses. A random
#: other 6-digit string is within one edit (a substitution) of a challenge with probability 54 / 10^6, and
#: 240/240 wrong answers were refused, so one edit of slack costs no security worth having.
#: An answer further off can still match on the forced score of the challenge (identity/challenge.py).
CONTENT_MAX_EDITS = 1

_WORD_DIGITS = {
    "zero": "0", "oh": "0", "o": "0", "nil": "0",
    "one": "1", "won": "1",
    "two": "2", "to": "2", "too": "2",
    "three": "3", "tree": "3",
    "four": "4", "for": "4", "fore": "4",
    "five": "5",
    "six": "6", "sex": "6",
    "seven": "7",
    "eight": "8", "ate": "8",
    "nine": "9", "nein": "9",
}


#: Challenges idme issues have at least this many distinct digits: the content check can force only those
#: through the recogniser (identity/challenge.py says why). It drops 6.8% of 6-digit strings (10^6 -> 932,400).
MIN_DISTINCT_DIGITS = 4


def new_challenge(n_digits: int = CHALLENGE_DIGITS) -> str:
    """A fresh random digit string from the OS's CSPRNG (``secrets``), with at least MIN_DISTINCT_DIGITS
    distinct digits when it is that long (rejection sampling: uniform over the strings kept)."""
    import secrets

    while True:
        digits = "".join(secrets.choice("0123456789") for _ in range(n_digits))
        if len(set(digits)) >= min(MIN_DISTINCT_DIGITS, n_digits):
            return digits


def check_challenge(expect: str) -> str:
    """``expect`` with spaces removed, if it is 1-32 digits; else IdmeError."""
    from ..errors import IdmeError

    digits = "".join(str(expect).split())
    if not digits.isdigit() or not 1 <= len(digits) <= 32 or not digits.isascii():
        raise IdmeError(f"a challenge is a string of digits such as 472913 (got {expect!r})")
    return digits


def spoken_digits(text: str) -> str:
    """The digits in recognised ``text``, number words ("four", "oh") and numerals ("4", "28") alike, in
    order; any other word is ignored. "4, 0, 0" -> "400"; "Big five, four" -> "54"."""
    import re

    out = []
    for tok in re.findall(r"[a-z]+|\d+", text.lower()):
        out.append(tok if tok.isdigit() else _WORD_DIGITS.get(tok, ""))
    return "".join(out)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two short strings."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@dataclass(frozen=True)
class LiveCheck(Check):
    """A verification with liveness: ``Check`` plus what was asked, what was heard and the replay match.

    decision adds ``replay`` (a near-copy of a stored enrollment take or accepted attempt) and
    ``wrong_content`` (the voice passed but the spoken digits are not the challenge's)."""

    #: The challenge digits (None: no content check was asked for).
    expected: str | None = None
    #: What the recogniser heard (text) and the digits read from it.
    heard: str | None = None
    heard_digits: str | None = None
    #: Best fingerprint match among the profile's stored recordings, its label and the replay bar.
    replay_score: float | None = None
    replay_of: str | None = None
    replay_threshold: float = REPLAY_THRESHOLD
    #: Mean log probability per token of the challenge forced through the recogniser (None: not scored, e.g.
    #: the free transcription already matched); see :mod:`idme.identity.challenge`.
    content_logprob: float | None = None

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update({"expected": self.expected, "heard": self.heard, "heard_digits": self.heard_digits,
                  "content_logprob": None if self.content_logprob is None else round(self.content_logprob, 4),
                  "replay_score": None if self.replay_score is None else round(self.replay_score, 4),
                  "replay_of": self.replay_of, "replay_threshold": self.replay_threshold})
        return d


def live_check(base, *, expected: str | None, heard: str | None, match: ReplayMatch | None, content=None):
    """Combines a voice ``Check`` with the content and replay results into a LiveCheck.

    content: a ``challenge.ContentCheck`` (the constrained recogniser's verdict); without one, ``heard`` is
    held to CONTENT_MAX_EDITS edits of ``expected``.

    Order: ``not_enrolled`` stays as it is; then ``replay`` (a copy is refused whoever's voice it carries and
    however little speech the voice check found); then the voice's ``reject`` / ``not_enough_speech``; then
    ``wrong_content``."""
    import dataclasses

    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    if content is not None:
        heard = content.heard
    digits = None if heard is None else spoken_digits(heard)
    content_ok = (content.matched if content is not None
                  else edit_distance(digits or "", expected or "") <= CONTENT_MAX_EDITS)
    extra = {"expected": expected, "heard": heard, "heard_digits": digits,
             "content_logprob": None if content is None else content.forced_logprob,
             "replay_score": None if match is None else match.score,
             "replay_of": None if match is None else match.label}
    if base.decision in ("accept", "reject", "not_enough_speech"):
        if match is not None and match.replay:
            fields["decision"] = REPLAY
            fields["reason"] = (f"the audio is a copy of an earlier recording ({match.label}, fingerprint match "
                                f"{match.score:.2f} >= {match.threshold:.2f}): record a new answer")
        elif base.decision == "accept" and expected is not None and not content_ok:
            fields["decision"] = WRONG_CONTENT
            fields["reason"] = (f"the answer was heard as {digits or 'no digits'!r}, not the challenge "
                                f"{expected!r}: say the digits shown")
    return LiveCheck(**fields, **extra)

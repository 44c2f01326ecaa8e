"""HTTP bodies of the /v1 API (pydantic at the edge only; the library speaks dataclasses).

No schema has a field for an embedding or voiceprint: profiles and sessions are described, never dumped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """Every error: a machine-readable ``code`` and a one-line ``detail`` a user can act on."""

    code: str = Field(description="e.g. unauthorized, forbidden_host, not_found, too_large, rate_limited")
    detail: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class EncoderInfo(BaseModel):
    name: str
    version: str | None = None
    dimension: int


class ThresholdsInfo(BaseModel):
    me: float
    enrolled: float
    same_unknown: float
    merge: float
    change: float
    narrowband: float | None = None
    source: str = Field(description="where these numbers come from (shipped defaults or a calibration)")


class Limits(BaseModel):
    max_upload_bytes: int
    max_upload_audio_s: float
    max_stream_audio_s: float
    max_streams: int
    verify_per_minute: int


class Info(BaseModel):
    idme_version: str
    api_version: Literal["v1"] = "v1"
    encoder: EncoderInfo
    asr: str = Field(description="the recogniser setting: auto, vosk, whisper or none")
    thresholds: ThresholdsInfo
    limits: Limits
    encodings: list[str]
    export_formats: list[str]


class Take(BaseModel):
    """One enrolment take's quality, as the gate measured it."""

    model_config = ConfigDict(extra="allow")
    source: str = ""
    speech_s: float | None = None


class ProfileOut(BaseModel):
    name: str
    kind: Literal["me", "enrolled"]
    n_takes: int
    encoder: dict[str, Any]
    takes: list[Take]
    created_at: str | None = None
    updated_at: str | None = None


class RenameIn(BaseModel):
    new_name: str = Field(min_length=1, max_length=200)


class EnrollOut(BaseModel):
    """``enrolled`` with the profile, or ``rejected`` with the gate's reason (nothing was stored)."""

    status: Literal["enrolled", "rejected"]
    reason: str | None = None
    profile: ProfileOut | None = None
    takes: list[Take] = []


class SessionSummaryOut(BaseModel):
    id: str
    created_at: str
    duration_s: float
    n_segments: int
    speakers: list[str]
    status: str


class WordOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    word: str
    start: float
    end: float


class SegmentOut(BaseModel):
    seg_id: int
    start: float
    end: float
    speaker: str
    kind: str
    score: float
    final: bool
    text: str = ""
    words: list[WordOut] = []


class SpeakerOut(BaseModel):
    """A session's speaker; ``n_embeddings`` counts saved voice samples, which are never returned."""

    label: str
    kind: str
    n_segments: int
    speech_s: float
    n_embeddings: int
    dim: int


class SessionOut(BaseModel):
    id: str
    created_at: str
    duration_s: float
    status: str
    source: str
    settings: dict[str, Any]
    models: dict[str, Any]
    speakers: list[SpeakerOut]
    segments: list[SegmentOut]


class NameSpeakerIn(BaseModel):
    speaker: str = Field(min_length=1, max_length=200, description='a label of the session, e.g. "Speaker 2"')
    person: str = Field(min_length=1, max_length=200, description='the profile to create or grow, e.g. "alice"')


class NameSpeakerOut(BaseModel):
    session_id: str
    speaker: str
    profile: ProfileOut
    relabelled: int


class Deleted(BaseModel):
    deleted: str
    #: For sessions: False when another process delayed scrubbing the old pages from disk.
    scrubbed: bool = True


class TicketOut(BaseModel):
    ticket: str = Field(description="pass as ?ticket= to /v1/listen within expires_in_s; valid once")
    expires_in_s: float


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` declaring each error status with the Problem body."""
    text = {400: "bad request", 401: "missing or wrong bearer token", 403: "foreign Host or Origin",
            404: "no such profile or session", 409: "conflict with the stored state",
            413: "upload or audio too long", 415: "not audio idme can read",
            422: "invalid parameters", 429: "too many requests", 503: "not ready"}
    return {c: {"model": Problem, "description": text.get(c, "error")} for c in codes}


class ConditionOut(BaseModel):
    bandwidth_hz: float
    narrowband: bool
    snr_db: float | None = None
    native_rate: int | None = None


class CandidateOut(BaseModel):
    name: str
    score: float
    threshold: float
    accepted: bool


class CheckOut(BaseModel):
    """A verify (1:1) or identify (1:N) outcome; identify adds candidates, gallery_size and expected_fpir."""

    decision: Literal["accept", "reject", "not_enough_speech", "not_enrolled", "replay", "wrong_content",
                      "challenge_expired", "challenge_reused"]
    name: str | None = None
    score: float | None = None
    threshold: float | None = None
    speech_s: float
    #: None only for a verify refused before the audio was read (challenge_expired / challenge_reused).
    condition: ConditionOut | None = None
    reason: str = ""
    candidates: list[CandidateOut] | None = None
    gallery_size: int | None = None
    expected_fpir: float | None = None
    #: Liveness (verify with ``expect`` or ``challenge_id``, issue 14): the digits asked, what was heard, and
    #: the closest earlier recording (a score at or above replay_threshold is a replay).
    expected: str | None = None
    heard: str | None = None
    heard_digits: str | None = None
    replay_score: float | None = None
    replay_of: str | None = None
    replay_threshold: float | None = None


class ChallengeOut(BaseModel):
    """A digit challenge for a liveness verify: say ``digits``, then POST /v1/verify with ``challenge_id``."""

    challenge_id: str = Field(description="pass as challenge_id to /v1/verify within expires_in_s; valid once")
    digits: str
    expires_in_s: float

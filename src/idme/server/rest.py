"""The /v1 REST routes: each parses, calls :class:`idme.api.Idme`, and returns a schema from ``schemas``.

Routes are plain ``def`` functions: FastAPI runs them on its thread pool, so embedding an upload never
blocks the event loop that carries the WebSocket streams.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .. import __version__
from ..errors import AudioError, EnrollmentError, IdmeError
from ..session.export import EXPORT_FORMATS
from .state import ApiError, ServerState
from .schemas import (ChallengeOut, CheckOut, Deleted, EnrollOut, Health, Info, NameSpeakerIn, NameSpeakerOut, ProfileOut,
                      RenameIn, SessionOut, SessionSummaryOut, TicketOut, problem_responses)
from .security import token_matches

_bearer = HTTPBearer(auto_error=False, description="the token from `idme serve` (<home>/server/token)")


def state_of(request: Request) -> ServerState:
    return request.app.state.idme_server


def require_token(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ServerState:
    """Every /v1 route: the bearer token or 401."""
    state = state_of(request)
    header = None if credentials is None else f"{credentials.scheme} {credentials.credentials}"
    if not token_matches(state.token, header):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token: send `Authorization: Bearer <token>` "
                       "(the token is in <home>/server/token)", {"WWW-Authenticate": "Bearer"})
    return state


Auth = Annotated[ServerState, Depends(require_token)]
#: Every route can answer these (auth, Host check, validation).
_COMMON = (401, 403, 422)

health_router = APIRouter()
router = APIRouter(prefix="/v1")


@health_router.get("/health", response_model=Health, tags=["meta"], responses=problem_responses(403))
def health() -> Health:
    """Liveness; the only route without the token."""
    return Health()


@router.get("/info", response_model=Info, tags=["meta"], responses=problem_responses(*_COMMON, 503))
def info(state: Auth) -> Info:
    """Versions, the encoder, the thresholds in force and where they come from, the server's limits."""
    from ..audio.push import ENCODINGS

    idme = state.ready_idme()
    th = idme.thresholds()
    o = state.options
    return Info.model_validate({
        "idme_version": __version__, "encoder": idme.encoder_info, "asr": idme.settings.asr,
        "thresholds": {k: getattr(th, k) for k in ("me", "enrolled", "same_unknown", "merge", "change",
                                                  "narrowband", "source")},
        "limits": {"max_upload_bytes": o.max_upload_bytes, "max_upload_audio_s": o.max_upload_audio_s,
                   "max_stream_audio_s": o.max_stream_audio_s, "max_streams": o.max_streams,
                   "verify_per_minute": o.verify_per_minute},
        "encodings": list(ENCODINGS), "export_formats": list(EXPORT_FORMATS)})


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, state: Auth) -> dict:
    """The OpenAPI document of this API (behind the token like everything but /health)."""
    return request.app.openapi()


@router.post("/tickets", response_model=TicketOut, tags=["listen"], responses=problem_responses(*_COMMON))
def ticket(state: Auth) -> TicketOut:
    """A single-use ticket for ``/v1/listen?ticket=...`` (a browser's WebSocket cannot send headers)."""
    return TicketOut(ticket=state.tickets.issue(), expires_in_s=state.tickets.ttl_s)


# -- profiles ----------------------------------------------------------------------------------------
@router.get("/profiles", response_model=list[ProfileOut], tags=["profiles"], responses=problem_responses(*_COMMON))
def profiles_list(state: Auth) -> list[dict]:
    """Enrolled profiles (never their voiceprints)."""
    return [p.to_dict() for p in state.idme.profiles.all()]


@router.get("/profiles/{name}", response_model=ProfileOut, tags=["profiles"],
            responses=problem_responses(*_COMMON, 400, 404))
def profiles_show(name: str, state: Auth) -> dict:
    return state.idme.profiles.get(_profile_name(name)).to_dict()


@router.post("/profiles/{name}/rename", response_model=ProfileOut, tags=["profiles"],
             responses=problem_responses(*_COMMON, 400, 404, 409))
def profiles_rename(name: str, body: RenameIn, state: Auth,
                    force: Annotated[bool, Query(description="allow renaming to or from 'me'")] = False) -> dict:
    from ..identity.profiles import check_name

    store = state.idme.profiles
    new, old = check_name(body.new_name), _profile_name(name)
    store.rename(old, new, force=force)
    state.mirror(old, new)
    return store.get(new).to_dict()


@router.delete("/profiles/{name}", response_model=Deleted, tags=["profiles"],
               responses=problem_responses(*_COMMON, 400, 404, 409))
def profiles_delete(name: str, state: Auth,
                    force: Annotated[bool, Query(description="allow deleting the owner 'me'")] = False) -> Deleted:
    """Deletes a profile: its voiceprints, metadata and any kept audio."""
    name = _profile_name(name)
    state.idme.profiles.remove(name, force=force)
    state.mirror(name)
    return Deleted(deleted=name)


@router.post("/profiles/{name}/enroll", response_model=EnrollOut, tags=["profiles"],
             responses=problem_responses(*_COMMON, 400, 409, 413, 415))
def profiles_enroll(name: str, state: Auth,
                    files: Annotated[list[UploadFile], File(description="one or more takes, any format idme reads")]
                    ) -> EnrollOut:
    """Adds takes to profile ``name`` (created if new) behind the quality gate. ``rejected`` says why and
    stores nothing."""
    from ..identity.profiles import check_name

    name = check_name(_profile_name(name))
    if not files:
        raise ApiError(422, "invalid", "files: give at least one audio file")
    idme = state.ready_idme()
    try:
        with _saved(files, state) as paths, state.compute:
            result = idme.enroll_files(name, paths)
    except EnrollmentError as exc:
        return EnrollOut(status="rejected", reason=str(exc).splitlines()[0])
    state.mirror(name)
    d = result.to_dict()
    return EnrollOut.model_validate({"status": "enrolled", "profile": d["profile"], "takes": d["takes"]})


# -- verify / identify -------------------------------------------------------------------------------
@router.post("/verify", response_model=CheckOut, tags=["verify"],
             responses=problem_responses(*_COMMON, 400, 409, 413, 415, 429))
def verify(state: Auth, name: Annotated[str, Form(min_length=1, max_length=200)],
           file: Annotated[UploadFile, File(description="the test utterance, any format idme reads")],
           expect: Annotated[str | None, Form(max_length=64, description="liveness: the digits the utterance "
                                              "must say (a challenge the app issued itself)")] = None,
           challenge_id: Annotated[str | None, Form(max_length=64, description="liveness: a challenge from "
                                                    "POST /v1/challenges (once, before it expires)")] = None) -> dict:
    """Is this ``name``'s voice? decision accept / reject / not_enough_speech / not_enrolled, with the score
    and the threshold it was held to. Rate-limited (``verify_per_minute``, shared with identify).

    Liveness (``expect`` or ``challenge_id``): also ``replay`` (a copy of an earlier recording) and
    ``wrong_content`` (not the digits asked); a challenge id that expired or was used already gives
    ``challenge_expired`` / ``challenge_reused`` without reading the audio."""
    _rate_limit(state)
    if expect is not None and challenge_id is not None:
        raise ApiError(422, "invalid", "give expect or challenge_id, not both")
    idme = state.ready_idme()
    name = _profile_name(name)
    if challenge_id is not None:
        expect, refused = _challenges(state).redeem(challenge_id)
        if refused is not None:
            from ..identity.profiles import check_name

            name = check_name(name)
            idme.audit_refusal(name, refused)
            why = "expired" if refused.endswith("expired") else "was used already"
            return {"decision": refused, "name": name, "speech_s": 0.0,
                    "reason": f"challenge {why}: get a new one from POST /v1/challenges and answer within "
                              f"{_challenges(state).ttl_s:.0f} s"}
    with _saved([file], state) as paths, state.compute:
        return idme.verify(name, paths[0], expect=expect).to_dict()


@router.post("/challenges", response_model=ChallengeOut, tags=["verify"], responses=problem_responses(*_COMMON))
def challenge(state: Auth) -> ChallengeOut:
    """A fresh random digit challenge for a liveness verify, valid once within ``expires_in_s``."""
    book = _challenges(state)
    cid, digits = book.issue()
    return ChallengeOut(challenge_id=cid, digits=digits, expires_in_s=book.ttl_s)


@router.post("/identify", response_model=CheckOut, tags=["verify"],
             responses=problem_responses(*_COMMON, 400, 409, 413, 415, 429))
def identify(state: Auth, file: Annotated[UploadFile, File(description="the test utterance")],
             top: Annotated[int, Form(ge=1, le=50)] = 5) -> dict:
    """Who among the enrolled is speaking: ranked candidates, ``reject`` when nobody matches."""
    _rate_limit(state)
    idme = state.ready_idme()
    with _saved([file], state) as paths, state.compute:
        return idme.identify(paths[0], top=top, gallery=state.gallery).to_dict()


# -- sessions ----------------------------------------------------------------------------------------
@router.get("/sessions", response_model=list[SessionSummaryOut], tags=["sessions"],
            responses=problem_responses(*_COMMON))
def sessions_list(state: Auth) -> list[dict]:
    return [s.to_dict() for s in state.idme.sessions.list()]


@router.get("/sessions/{session_id}", response_model=SessionOut, tags=["sessions"],
            responses=problem_responses(*_COMMON, 400, 404))
def sessions_show(session_id: str, state: Auth) -> dict:
    """One session with its speakers and segments ("latest" or a unique id prefix works)."""
    return state.idme.sessions.get(session_id).to_dict()


@router.delete("/sessions/{session_id}", response_model=Deleted, tags=["sessions"],
               responses=problem_responses(*_COMMON, 400, 404, 409))
def sessions_delete(session_id: str, state: Auth) -> Deleted:
    """Deletes a session with its transcripts and voice samples, scrubbed from disk."""
    store = state.idme.sessions
    sid = store.get(session_id).id
    return Deleted(deleted=sid, scrubbed=store.delete(sid))


_MEDIA = {"md": "text/markdown", "txt": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt",
          "json": "application/json", "rttm": "text/plain"}


# No response_class: it would document the error bodies as text too (they are JSON Problems).
@router.get("/sessions/{session_id}/export/{fmt}", tags=["sessions"],
            responses={200: {"content": {m: {"schema": {"type": "string"}} for m in set(_MEDIA.values())},
                             "description": "the transcript"},
                       **problem_responses(*_COMMON, 400, 404)})
def sessions_export(session_id: str, fmt: Literal["md", "txt", "srt", "vtt", "json", "rttm"],
                    state: Auth) -> PlainTextResponse:
    """The session as a transcript file (md, txt, srt, vtt, json or rttm)."""
    sid = state.idme.sessions.get(session_id).id
    text = state.idme.render(sid, fmt)
    return PlainTextResponse(text, media_type=_MEDIA[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{sid}.{fmt}"'})


@router.post("/sessions/{session_id}/name", response_model=NameSpeakerOut, tags=["sessions"],
             responses=problem_responses(*_COMMON, 400, 404, 409))
def sessions_name(session_id: str, body: NameSpeakerIn, state: Auth) -> dict:
    """Turns an unknown speaker of the session into a profile and relabels the session."""
    idme = state.ready_idme()
    with state.compute:
        named = idme.name_speaker(session_id, body.speaker, body.person)
    state.mirror(named.profile.name)
    return named.to_dict()


# -- helpers -----------------------------------------------------------------------------------------
def _challenges(state: ServerState):
    """The server's issued challenges."""
    return state.challenges


def _profile_name(name: str) -> str:
    return "me" if name.strip().lower() == "me" else name


def _rate_limit(state: ServerState) -> None:
    if not state.verify_limit.allow():
        wait = state.verify_limit.retry_after_s()
        raise ApiError(429, "rate_limited", f"more than {state.verify_limit.per_minute} verify/identify requests "
                       f"a minute; retry in {wait} s", {"Retry-After": str(wait)})


@contextlib.contextmanager
def _saved(files: list[UploadFile], state: ServerState) -> Iterator[list[Path]]:
    """The uploads as files in a private temporary folder (removed afterwards), each checked against
    ``max_upload_audio_s``; libsndfile reads them by content, whatever their names say."""
    from ..audio.sources import FileSource

    tmp_root = state.idme.home / "tmp"
    tmp_root.mkdir(mode=0o700, exist_ok=True)
    cap = state.options.max_upload_audio_s
    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        paths: list[Path] = []
        names: dict[str, str] = {}
        for i, f in enumerate(files):
            suffix = Path(f.filename or "").suffix.lower()
            suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ""
            path = Path(tmp) / f"take{i}{suffix}"
            with open(path, "wb") as out:
                while chunk := f.file.read(1 << 20):
                    out.write(chunk)
            names[str(path)] = f.filename or f"upload {i + 1}"
            try:
                with FileSource(path) as src:
                    dur = src.duration_s
            except AudioError as exc:
                raise _renamed(exc, names) from None
            if dur is not None and dur > cap:
                raise ApiError(413, "too_long", f"{names[str(path)]}: {dur:.0f} s of audio; at most "
                               f"{cap:.0f} s per file")
            paths.append(path)
        try:
            yield paths
        except IdmeError as exc:  # the message names the client's file, not our temporary path
            raise _renamed(exc, names) from None


def _renamed(exc: IdmeError, names: dict[str, str]) -> IdmeError:
    msg = str(exc)
    for tmp_path, name in names.items():
        msg = msg.replace(tmp_path, name)
    return type(exc)(msg)


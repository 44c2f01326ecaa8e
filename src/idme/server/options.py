"""The server's settings: where it listens and what it allows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerOptions:
    """How the server listens and what it allows. Sizes in bytes, durations in seconds."""

    #: Address to bind: loopback by default (binding 0.0.0.0 exposes the voiceprints to the network).
    host: str = "127.0.0.1"
    port: int = 8765
    #: The bearer token file; default ``<home>/server/token`` (created 0600 on first start).
    token_file: Path | None = None
    #: Host names allowed besides loopback and ``host`` (e.g. the machine's name behind TLS).
    extra_hosts: tuple[str, ...] = ()
    #: One multipart upload (all its files), bytes. 20 MiB holds 10 min of 16 kHz 16-bit WAV.
    max_upload_bytes: int = 20 * 1024 * 1024
    #: Audio in one uploaded file (enrolment take, verify/identify sample), seconds.
    max_upload_audio_s: float = 300.0
    #: Audio one WebSocket stream may send, seconds (4 h: a long meeting).
    max_stream_audio_s: float = 4 * 3600.0
    #: WebSocket streams at once; each is a live session with its own labeller (and recogniser).
    max_streams: int = 4
    #: verify + identify requests per minute, all clients together (verify is an authenticator).
    verify_per_minute: int = 30
    #: Uploads decoded and embedded at once (enrol, verify, identify, name); the others wait their turn.
    #: 0 = the number of CPU cores. Each concurrent encoder run grows onnxruntime's memory arena for good:
    #: 50 verify clients at once ended at 625-716 MB RSS with 8-40 at once, 470-480 MB with 2 (2 cores,
    #: docs/benchmarks-server.md); on a machine shared with other jobs more threads did win more CPU time.
    max_parallel_embeds: int = 0
    #: Lifetime of a WebSocket ticket.
    ticket_ttl_s: float = 30.0
    #: Largest binary WebSocket message, bytes (1 MiB is 5 s of 48 kHz stereo f32; browsers send ~10 ms).
    max_frame_bytes: int = 1024 * 1024
    #: Audio a stream may have waiting for the labeller before the client gets ``overload``.
    max_queued_s: float = 10.0
    #: Server events waiting for a slow client before it gets ``overload``.
    max_pending_events: int = 1024
    #: At most one ``lag`` event per this many seconds, sent while audio waits to be labelled.
    lag_every_s: float = 1.0
    #: Seconds the client has to send its start message.
    start_timeout_s: float = 10.0
    #: Transcribe streams with the recogniser ``settings.asr`` selects (False: labels only).
    transcribe: bool = True

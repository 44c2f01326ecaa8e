"""The server under load: verify throughput and latency with many clients, and concurrent real-time streams.

    python bench/serve.py ../shared/data                          # 50 verify clients, 4 streams for 60 s
    python bench/serve.py ../shared/data --stream-s 600           # the 10-minute run of issue 13
    python bench/serve.py ../shared/data --asr whisper --streams 2

A real server (uvicorn in a child process, so its RSS is its own) over a fresh home; the owner of
meetings-dev/meeting01 (LibriSpeech 367) is enrolled through POST /v1/profiles/me/enroll.

* verify: ``--clients`` concurrent HTTP clients post ``--requests`` verifications in all, cycling through
  LibriSpeech test-other utterances of 367 (genuine) and of the other 9 speakers (impostors). Reports
  requests/s, p50/p95/max latency, errors, and the accept rates (a sanity check of the answers).
* streams: ``--streams`` WebSocket clients each stream a meetings-dev meeting (looped to ``--stream-s``) in
  real time as 48 kHz int16, 100 ms per message. Label latency is measured by the client: the time from
  sending the audio a segment ends with to receiving that segment's first label (interim or final), and
  to its final label. Growth = p95 over the last third of the run / p95 over the first third.
* RSS of the server process, sampled every second: at start (after the encoder loaded), peak, end.

Labels only by default (``--asr none``); timings on a shared 2-core machine move by tens of percent.
"""

from __future__ import annotations

import os

# Benchmarks enrol into throwaway homes, encrypted at rest like any other (issue 14): give them a passphrase
# when the caller set none, so `make bench` runs headless (a real home never gets this default).
os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOKEN = "bench-token-" + "y" * 32

_SERVER = """
import json, os, uvicorn
from idme.api import Idme
from idme.server import ServerOptions, create_app
from idme.settings import resolve
o = json.loads(os.environ["BENCH_OPTIONS"])
idme = Idme(resolve(o.pop("home"), asr=o.pop("asr")))
app = create_app(options=ServerOptions(**o), idme=idme, token=os.environ["BENCH_TOKEN"])
app.state.idme_server.ready_idme()
uvicorn.run(app, host="127.0.0.1", port=o["port"], log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


class Server:
    def __init__(self, home: Path, asr: str, streams: int, parallel_embeds: int) -> None:
        self.port = _free_port()
        opts = {"home": str(home), "asr": asr, "port": self.port, "max_streams": streams,
                "verify_per_minute": 10**9, "max_queued_s": 30.0, "max_parallel_embeds": parallel_embeds}
        env = {**os.environ, "BENCH_OPTIONS": json.dumps(opts), "BENCH_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER], env=env, stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        self.rss: list[tuple[float, float]] = []

    def wait(self) -> None:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise SystemExit("the server did not start")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    async def sample_rss(self, stop: asyncio.Event) -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            self.rss.append((time.monotonic() - t0, self.rss_mb()))
            with __import__("contextlib").suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def bench_verify(server: Server, data: Path, clients: int, requests: int) -> dict:
    import httpx

    ls = data / "librispeech-test-other"
    files = sorted(ls.glob("*/*.flac"))
    genuine = [(p, True) for p in files if p.parent.name == "367"][3:]  # the first 3 are not in meeting01's enrolment
    impostor = [(p, False) for p in files if p.parent.name != "367"]
    trials = [genuine[i % len(genuine)] if i % 2 == 0 else impostor[i % len(impostor)] for i in range(requests)]
    blobs = {p: p.read_bytes() for p, _ in trials}
    latencies: list[float] = []
    errors: list[str] = []
    decisions = {True: [], False: []}
    queue: asyncio.Queue = asyncio.Queue()
    for t in trials:
        queue.put_nowait(t)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=300) as c:
            while not queue.empty():
                path, target = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    r = await c.post("/v1/verify", data={"name": "me"},
                                     files={"file": (path.name, blobs[path], "audio/flac")})
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors.append(str(r.status_code))
                else:
                    decisions[target].append(r.json()["decision"] == "accept")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": requests, "wall_s": round(wall, 2),
            "requests_per_s": round(len(latencies) / wall, 2), "p50_s": round(_pct(latencies, 50), 3),
            "p95_s": round(_pct(latencies, 95), 3), "max_s": round(max(latencies, default=float("nan")), 3),
            "errors": len(errors), "error_kinds": sorted(set(errors)),
            "genuine_accept_rate": round(float(np.mean(decisions[True])), 3) if decisions[True] else None,
            "impostor_accept_rate": round(float(np.mean(decisions[False])), 3) if decisions[False] else None}


def _meeting_pcm(path: Path, seconds: float) -> bytes:
    import soundfile as sf
    import soxr

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    x = soxr.resample(audio.mean(axis=1), rate, 48000).astype(np.float32)
    reps = int(np.ceil(seconds * 48000 / len(x)))
    x = np.tile(x, reps)[: int(seconds * 48000)]
    return np.round(x * 32767).astype("<i2").tobytes()


async def bench_stream(server: Server, pcm: bytes, name: str) -> dict:
    import websockets

    step = 4800 * 2  # 100 ms of 48 kHz mono int16
    sent_at: list[float] = []  # monotonic time each 100 ms message was sent
    first: dict[int, float] = {}
    final: dict[int, float] = {}
    at: dict[int, float] = {}  # segment id -> time its label arrived relative to the run start
    errors: list[str] = []
    url = server.url.replace("http", "ws") + "/v1/listen"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                                  max_size=2**22) as ws:
        await ws.send(json.dumps({"type": "start", "encoding": "pcm_s16le", "sample_rate": 48000, "channels": 1}))
        started = json.loads(await ws.recv())
        t0 = time.monotonic()

        async def send() -> None:
            for i in range(0, len(pcm), step):
                await ws.send(pcm[i:i + step])
                sent_at.append(time.monotonic())
                await asyncio.sleep(max(0.0, t0 + (i + step) / (2 * 48000) - time.monotonic()))
            await ws.send(json.dumps({"type": "stop"}))

        def latency(end_s: float, now: float) -> float | None:
            k = int(np.ceil(end_s / 0.1)) - 1  # the message that carried the segment's last sample
            return now - sent_at[k] if 0 <= k < len(sent_at) else None

        sender = asyncio.create_task(send())
        async for message in ws:
            ev = json.loads(message)
            now = time.monotonic()
            if ev["type"] in ("segment", "relabel", "text"):
                lat = latency(ev["end"], now)
                if lat is None:
                    continue
                if ev["id"] not in first:
                    first[ev["id"]], at[ev["id"]] = lat, now - t0
                if ev["final"] and ev["id"] not in final:
                    final[ev["id"]] = lat
            elif ev["type"] in ("error", "overload"):
                errors.append(ev.get("code", ev["type"]))
            elif ev["type"] == "end":
                end = ev
        await sender
    ids = sorted(first, key=lambda i: at[i])
    third = max(1, len(ids) // 3)
    early = [first[i] for i in ids[:third]]
    late = [first[i] for i in ids[-third:]]
    return {"stream": name, "session_id": started["session_id"], "audio_s": end["audio_s"],
            "segments": len(first), "first_label_p50_s": round(_pct(list(first.values()), 50), 3),
            "first_label_p95_s": round(_pct(list(first.values()), 95), 3),
            "final_label_p95_s": round(_pct(list(final.values()), 95), 3),
            "p95_growth": round(_pct(late, 95) / _pct(early, 95), 2) if early and late else None,
            "errors": errors}


async def main_async(args: argparse.Namespace) -> dict:
    import httpx

    data = Path(args.data)
    home = Path(tempfile.mkdtemp(prefix="idme-bench-serve-"))
    server = Server(home, args.asr, args.streams, args.parallel_embeds)
    try:
        server.wait()
        enroll = sorted((data / "meetings-dev" / "meeting01" / "enroll").glob("me_*.wav"))
        r = httpx.post(server.url + "/v1/profiles/me/enroll", headers={"Authorization": f"Bearer {TOKEN}"},
                       files=[("files", (p.name, p.read_bytes(), "audio/wav")) for p in enroll], timeout=120)
        assert r.json()["status"] == "enrolled", r.text
        report: dict = {"asr": args.asr, "parallel_embeds": args.parallel_embeds,
                        "rss_mb_after_start": round(server.rss_mb(), 1)}
        stop = asyncio.Event()
        sampler = asyncio.create_task(server.sample_rss(stop))
        report["verify"] = await bench_verify(server, data, args.clients, args.requests)
        report["rss_mb_after_verify"] = round(server.rss_mb(), 1)
        meetings = sorted((data / "meetings-dev").glob("meeting*/meeting.wav"))
        pcms = [_meeting_pcm(meetings[i % len(meetings)], args.stream_s) for i in range(args.streams)]
        streams = await asyncio.gather(*(bench_stream(server, pcm, meetings[i % len(meetings)].parent.name)
                                         for i, pcm in enumerate(pcms)))
        stop.set()
        await sampler
        report["streams"] = list(streams)
        rss = [m for _, m in server.rss]
        report["rss_mb"] = {"start": rss[0], "peak": max(rss), "end": rss[-1]} if rss else None
        first = [s["first_label_p95_s"] for s in streams]
        report["streams_summary"] = {"streams": args.streams, "stream_s": args.stream_s,
                                     "worst_first_label_p95_s": max(first),
                                     "worst_final_label_p95_s": max(s["final_label_p95_s"] for s in streams),
                                     "worst_p95_growth": max((s["p95_growth"] or 0) for s in streams),
                                     "errors": sum(len(s["errors"]) for s in streams)}
        return report
    finally:
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="the shared data folder (../shared/data)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--stream-s", type=float, default=60.0)
    ap.add_argument("--asr", default="none")
    ap.add_argument("--parallel-embeds", type=int, default=0,
                    help="ServerOptions.max_parallel_embeds (0 = the CPU cores)")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args()
    t0 = time.time()
    load0 = os.getloadavg()
    report = asyncio.run(main_async(args))
    report["load_average_start"] = [round(x, 2) for x in load0]
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

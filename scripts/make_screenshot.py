#!/usr/bin/env python3
"""Renders docs/listen.svg: the console of `idme listen --file examples/meeting.wav`, via rich's recorder.

    python scripts/make_screenshot.py

Enrols the example owner in a temporary store, labels and transcribes the example meeting exactly as
`idme listen` does, and saves what the console shows as SVG for the README.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from idme.audio.sources import FileSource, read_audio
from idme.cli.console import LiveView
from idme.embed import make_embedder
from idme.identity.enroll import enroll
from idme.identity.profiles import ProfileStore
from idme.identity.thresholds import load
from idme.identity.tracker import SpeakerTracker
from idme.pipeline import Labeller, Pipeline
from idme.transcribe.select import make_transcriber
from idme.vault import EphemeralVault

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    emb = make_embedder("campplus")
    with tempfile.TemporaryDirectory() as home:
        store = ProfileStore(Path(home), vault=EphemeralVault())  # a throwaway store: key in memory only
        th = load(emb.name)
        takes = sorted((ROOT / "examples" / "enroll").glob("me_*.wav"))
        enroll(store, emb, "me", [(t.name, read_audio(t)) for t in takes], th)
        transcriber, _ = make_transcriber("auto")
        console = Console(record=True, width=110, force_terminal=False)
        view = LiveView(console, "idme · examples/meeting.wav")
        labeller = Labeller(emb, SpeakerTracker(store.all(), emb.dimension, th))
        with view:
            Pipeline(FileSource(ROOT / "examples" / "meeting.wav"), labeller, view, transcriber=transcriber).run()
    out = ROOT / "docs" / "listen.svg"
    out.parent.mkdir(exist_ok=True)
    console.save_svg(str(out), title="idme listen --file examples/meeting.wav")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

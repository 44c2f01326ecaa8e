"""The page at / in a real browser (Debian's chromium driven by Playwright) against a real ``idme serve``:
enrol from the microphone, stream a meeting, see the right labels, stop, export, name a speaker.

The microphone is chromium's fake capture device playing a WAV: two of the owner's takes, a pause, then the
first 17 s of the example meeting (owner 1688 at 3.0-7.3 s of it, 2414 and 1998 around).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("uvicorn")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (.ci/run installs it; locally: apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

from conftest import EXAMPLES, OWNER_TAKES  # noqa: E402
from server_helpers import serving  # noqa: E402

ENROL_S = 8.5  # the owner's first two takes are 7.9 s
MEETING_AT_S = 10.5
MEETING_S = 17.0
RATE = 48000


def _fake_microphone(path: Path) -> Path:
    """The WAV the fake capture device plays once: 16-bit, 48 kHz mono (what a browser microphone gives)."""
    import soxr

    takes = [sf.read(p, dtype="float32")[0] for p in OWNER_TAKES[:2]]
    meeting, rate = sf.read(EXAMPLES / "meeting.wav", dtype="float32")
    gap = np.zeros(int(MEETING_AT_S * 16000) - sum(map(len, takes)), np.float32)
    x = np.concatenate(takes + [gap, meeting[: int(MEETING_S * rate)], np.zeros(16000, np.float32)])
    sf.write(path, soxr.resample(x, 16000, RATE), RATE, subtype="PCM_16")
    return path


def _session_summary(port: int, token: str, session_id: str) -> str:
    """The saved session's segments (start, end, label) as one line: what a failed naming step was given."""
    import httpx

    r = httpx.get(f"http://127.0.0.1:{port}/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"})
    segs = r.json().get("segments", []) if r.status_code == 200 else []
    return "; session: " + ", ".join(f"{g['start']:.1f}-{g['end']:.1f} {g['speaker']}" for g in segs)


@pytest.fixture
def served(tmp_path):
    home = tmp_path / "home"
    with serving(home, tmp_path / "serve.log") as (port, token):
        yield port, token, tmp_path / "serve.log"


def test_enrol_listen_export_and_name_from_the_browser(served, tmp_path) -> None:
    """From an empty home: the page enrols the owner from the microphone, labels the owner's turn Me and the
    others as unknown speakers live, saves the session on stop, exports it and names a speaker."""
    port, token, log = served
    wav = _fake_microphone(tmp_path / "mic.wav")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required"])
        try:
            # bypass_csp: the page's CSP forbids eval, which Playwright's wait_for_function uses.
            context = browser.new_context(permissions=["microphone"], accept_downloads=True, bypass_csp=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/?enrol_s={ENROL_S}#token={token}")
            page.wait_for_function("document.getElementById('status').textContent.includes('enrol yourself')")
            assert "token" not in page.url  # the fragment is dropped from the address bar
            page.click("#enrol")  # opens the microphone: the fake device starts playing the WAV now
            mic_opened = time.monotonic()
            page.wait_for_selector("#enrol-result[data-status]", timeout=60_000)
            assert page.get_attribute("#enrol-result", "data-status") == "enrolled", \
                page.inner_text("#enrol-result") + page.inner_text("#status")
            page.click("#start")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('listening')")
            # The owner's turn (3.0-7.3 s of the meeting) gets a final Me label while streaming.
            page.wait_for_selector("#transcript li[data-kind='me'][data-final='true']", timeout=60_000)
            played = mic_opened + MEETING_AT_S + MEETING_S + 0.5  # the meeting has been heard to its end
            page.wait_for_timeout(max(0.0, played - time.monotonic()) * 1000)
            page.click("#stop")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('saved session')",
                                   timeout=60_000)
            kinds = page.eval_on_selector_all("#transcript li", "els => els.map(e => e.dataset.kind)")
            assert "me" in kinds and "unknown" in kinds, kinds
            assert page.locator("#timeline .block").count() >= 3
            with page.expect_download() as download:
                page.click("button[data-fmt='md']")
            md = Path(download.value.path()).read_text()
            assert "Me" in md and "Speaker" in md
            page.fill("#person", "alice")
            page.click("#name")
            page.wait_for_function("document.getElementById('name-result').textContent.length > 0",
                                   timeout=30_000)
            assert page.inner_text("#name-result").startswith("✓"), \
                page.inner_text("#name-result") + _session_summary(port, token, page.inner_text("#session-id"))
            assert not errors, errors
        finally:
            browser.close()

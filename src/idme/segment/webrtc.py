"""Today's segmentation behind the :class:`~idme.segment.base.Segmenter` protocol: webrtcvad chunks
(``idme.vad.SpeechChunker``) cut at speaker changes (the change split inside ``idme.pipeline.Labeller``).

``WebrtcSegmenter.regions`` runs a non-live ``Labeller`` (the very code ``idme listen --segmenter webrtc``
runs) over the whole signal and returns its segments as regions: one speaker per instant, so ``overlap`` is
always False; the speaker index numbers the Labeller's final labels in order of first appearance. The live
webrtc path is unchanged: :mod:`idme.live` still drives the ``Labeller`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..audio.frames import AudioFrame
from ..identity.tracker import SpeakerTracker
from ..pipeline import Labeller, LabelOptions
from .base import SpeechRegion

if TYPE_CHECKING:
    from ..embed.base import Embedder
    from ..identity.profiles import Profile
    from ..identity.thresholds import Thresholds

SAMPLE_RATE_HZ = 16000


class WebrtcSegmenter:
    """VAD chunks + speaker-change split, one speaker at a time (``--segmenter webrtc``)."""

    name = "webrtc"
    sample_rate = SAMPLE_RATE_HZ

    def __init__(self, embedder: Embedder, thresholds: Thresholds, profiles: list[Profile] | None = None,
                 options: LabelOptions = LabelOptions(), calibration=None) -> None:
        """calibration: the tracker's Me / named decisions on calibrated LLRs (``Idme.calibration``), as in
        ``idme listen``; None: on the cosine thresholds."""
        self.embedder = embedder
        self.calibration = calibration
        self.thresholds = thresholds
        self.profiles = list(profiles or [])
        self.options = options
        #: Final label of each region of the last ``regions`` call, in the same order.
        self.labels: list[str] = []

    def labeller(self) -> Labeller:
        """A fresh non-live Labeller with this segmenter's profiles and thresholds."""
        tracker = SpeakerTracker(self.profiles, self.embedder.dimension, self.thresholds,
                                 calibration=self.calibration)
        return Labeller(self.embedder, tracker, self.options, live=False)

    def regions(self, samples: np.ndarray) -> list[SpeechRegion]:
        """samples: float32 (n,) at 16 kHz -> the Labeller's segments (actual speech, without the gap fill
        of the shown start), sorted by start, speaker indices from 0."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        lab = self.labeller()
        events = lab.push(AudioFrame(x, SAMPLE_RATE_HZ, 0)) + lab.finish()
        final = {e.id: e.speaker for e in events if e.final}  # the latest final label wins (corrections)
        index: dict[str, int] = {}
        out, labels = [], []
        for sid in sorted(final, key=lambda i: (lab.segments[i].start, i)):
            seg = lab.segments[sid]
            a = int(round(seg.start * SAMPLE_RATE_HZ))
            b = int(round(seg.end * SAMPLE_RATE_HZ))
            if b <= a:
                continue
            spk = index.setdefault(final[sid], len(index))
            out.append(SpeechRegion(a, b - a, spk, False))
            labels.append(final[sid])
        self.labels = labels
        return out

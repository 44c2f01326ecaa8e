"""Segmenters: where speech is and who of the speakers in a window talks when (issue 11).

- :mod:`.base`: ``SpeechRegion``, ``LabelledRegion``, the ``Segmenter`` protocol and the event conversion;
- :mod:`.pyannote`: pyannote segmentation-3.0 on onnxruntime, overlap-aware, file mode;
- :mod:`.live`: the Pipeline labellers over it (rolling buffer for live sources, whole-file for files);
- :mod:`.webrtc`: ``WebrtcSegmenter``, today's chunker + change split behind the same protocol.

The default live path (webrtcvad + speaker-change split) stays in :mod:`idme.vad` and :mod:`idme.pipeline`.
"""

from __future__ import annotations

from .base import LabelledRegion, Segmenter, SpeechRegion, to_events

#: Names accepted by ``--segmenter``.
SEGMENTERS = ("webrtc", "pyannote")

__all__ = ["SEGMENTERS", "LabelledRegion", "Segmenter", "SpeechRegion", "to_events"]

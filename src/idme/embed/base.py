"""The Embedder protocol every speaker encoder implements (CAM++ bundled, SpeechBrain ECAPA optional)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns speech into a fixed-size, L2-normalised speaker embedding.

    Indices and profiles are sized and tagged from these attributes, never from constants.
    """

    #: Stable identifier stored with profiles and sessions, e.g. "campplus".
    name: str
    #: Version string of the weights (e.g. a checksum prefix); a profile made with another version is refused.
    version: str
    #: Embedding dimension, e.g. 192.
    dimension: int
    #: Rate the encoder expects, Hz (16000 for every encoder shipped).
    sample_rate: int
    #: Shortest input, in seconds, that gives a usable embedding.
    min_input_s: float

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """samples: float32, shape (n,), at ``sample_rate`` -> float32 shape (dimension,), unit norm."""
        ...

    def embed_windows(self, samples: np.ndarray, win_samples: int, hop_samples: int) -> np.ndarray:
        """Embeds equal-length sliding windows of one signal.

        samples: float32 (n,) at ``sample_rate``; returns float32 (n_windows, dimension), unit norm rows,
        row i covering samples [i*hop, i*hop + win). Each row equals ``embed`` of that window.
        """
        ...

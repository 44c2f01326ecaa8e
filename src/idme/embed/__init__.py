"""Speaker encoders behind one Embedder protocol: CAM++ (bundled, default) and SpeechBrain ECAPA (extra)."""

from __future__ import annotations

from ..errors import IdmeError
from .base import Embedder

#: Encoders idme can use; the first is the default.
EMBEDDERS = ("campplus", "ecapa")


def make_embedder(name: str = "campplus", device: str = "cpu") -> Embedder:
    """Builds encoder ``name`` from the local models directory (nothing is downloaded)."""
    if name == "campplus":
        if device != "cpu":
            raise IdmeError("the bundled CAM++ encoder runs on the CPU only; drop --compute or use --embedder ecapa")
        from .campplus import CampPlusEmbedder

        return CampPlusEmbedder()
    if name == "ecapa":
        from .ecapa import EcapaEmbedder

        return EcapaEmbedder(device=device)
    raise IdmeError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")


__all__ = ["EMBEDDERS", "Embedder", "make_embedder"]

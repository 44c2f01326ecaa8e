"""idme: local, real-time speaker labelling (Me / enrolled / unknown) with transcription."""

__version__ = "0.1.0"

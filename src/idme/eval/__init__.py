"""Evaluation: speaker-verification metrics, trial lists, DET plots and diarization scoring.

- ``idme.eval.metrics``: EER, minDCF, DET operating points, FAR/FRR at a threshold (numpy only).
- ``idme.eval.trials``: VoxCeleb / Kaldi trial lists, cosine scoring, an on-disk embedding cache.
- ``idme.eval.plots``: DET + score histogram, per-stage cost bars (matplotlib, imported lazily).
- ``idme.eval.der``: frame-based DER, owner recall / false-owner rate; agrees with
  ``shared/tools/score_meeting.py`` on single-speaker references, md-eval style on overlapping ones.
"""

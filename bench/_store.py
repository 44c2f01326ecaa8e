"""One throwaway idme store for the verification benches (bench/verify_*.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from idme.api import Idme
from idme.eval.calibration import HOME_FILE
from idme.settings import resolve


def open_store(home: Path, calibration: Path | None = None) -> Idme:
    """A fresh store at ``home`` (created); ``calibration``: a calibration JSON (its cohort beside it) that
    decides instead of the shipped one (a home's own calibration file wins)."""
    home.mkdir(parents=True)
    if calibration is not None:
        shutil.copy(calibration, home / HOME_FILE)
        for cohort in calibration.parent.glob("cohort_*.npz"):
            shutil.copy(cohort, home / cohort.name)
    return Idme(resolve(home, asr="none"))

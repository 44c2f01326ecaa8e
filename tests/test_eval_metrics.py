"""Verification metrics, trial lists, the embedding cache and evaluation plots (idme.eval)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from idme.errors import AudioError, IdmeError
from idme.eval.metrics import det_curve, eer, min_dcf, rates_at, summarize, threshold_at_far
from idme.eval.plots import plot_det, plot_stage_costs
from idme.eval.trials import EmbeddingCache, Trial, read_trials, score_trials, split_scores

# Worked example (accept when score >= t). Sweep over the distinct scores:
#   t     0.1  0.2  0.3  0.4  0.5  0.6  0.7  0.75 0.8  0.9  inf
#   FRR   0    0    0    0    1/4  1/4  1/4  2/4  2/4  3/4  1
#   FAR   6/6  5/6  4/6  3/6  3/6  2/6  1/6  1/6  0    0    0
TGT = np.array([0.9, 0.8, 0.7, 0.4])
NON = np.array([0.75, 0.6, 0.5, 0.3, 0.2, 0.1])
from conftest import SHARED

LIBRI_TRIALS = SHARED / "data" / "librispeech-test-other" / "trials.txt"


def test_det_curve_matches_hand_sweep() -> None:
    """The operating points are exactly the hand-computed FAR/FRR table, ending at +inf."""
    far, frr, thr = det_curve(TGT, NON)
    np.testing.assert_allclose(thr[:-1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9])
    assert thr[-1] == np.inf
    np.testing.assert_allclose(frr, [0, 0, 0, 0, 1 / 4, 1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4, 1])
    np.testing.assert_allclose(far, [6 / 6, 5 / 6, 4 / 6, 3 / 6, 3 / 6, 2 / 6, 1 / 6, 1 / 6, 0, 0, 0])


def test_eer_interpolates_between_operating_points() -> None:
    """FRR - FAR changes sign between t=0.6 and t=0.7 where FRR stays 1/4: EER 0.25 at t=0.65."""
    rate, thr = eer(TGT, NON)
    assert rate == pytest.approx(0.25)
    assert thr == pytest.approx(0.65)
    assert rates_at(TGT, NON, thr) == pytest.approx((1 / 6, 1 / 4))


def test_eer_exact_crossing_and_ties() -> None:
    """An operating point with FAR == FRR is returned as is; identical classes give EER 0.5 whatever the order."""
    # At t=0.5, FAR = 1/2 (non-target 0.5 accepted) and FRR = 1/2 (target 0.3 rejected).
    rate, thr = eer(np.array([0.3, 0.6]), np.array([0.5, 0.1]))
    assert (rate, thr) == (0.5, 0.5)
    rate, _ = eer(np.array([0.2, 0.5, 0.8]), np.array([0.8, 0.5, 0.2]))
    assert rate == pytest.approx(0.5)
    perfect, thr = eer(np.array([0.8, 0.9]), np.array([0.1, 0.2]))
    assert perfect == 0.0 and 0.2 < thr <= 0.8


def test_min_dcf_hand_values() -> None:
    """Normalised minDCF: p=0.5 -> min(FRR+FAR) = 5/12 at 0.7; p=0.1 -> min(FRR + 9 FAR) = 1/2 at 0.8."""
    assert min_dcf(TGT, NON, 0.5) == pytest.approx((5 / 12, 0.7))
    assert min_dcf(TGT, NON, 0.1) == pytest.approx((0.5, 0.8))
    # Costs scale the two error terms: c_miss=1, c_fa=3 at p=0.5 -> min(FRR + 3 FAR) = 0.5 at t=0.8.
    assert min_dcf(TGT, NON, 0.5, c_miss=1, c_fa=3) == pytest.approx((0.5, 0.8))


def test_min_dcf_never_exceeds_one() -> None:
    """Scores carrying no information give a normalised minDCF of exactly 1 (a fixed decision is as good)."""
    value, thr = min_dcf(np.array([0.1, 0.9]), np.array([0.1, 0.9]), 0.01)
    assert value == pytest.approx(1.0)
    assert thr == np.inf  # at p=0.01 rejecting everything is the cheaper fixed decision


def test_threshold_at_far() -> None:
    """The threshold sits just above the (k+1)-th highest non-target score and meets the FAR target."""
    thr = threshold_at_far(NON, 1 / 6)
    assert 0.6 < thr < 0.6 + 1e-12
    assert rates_at(TGT, NON, thr)[0] == pytest.approx(1 / 6)
    assert 0.75 < threshold_at_far(NON, 0.0) < 0.75 + 1e-12
    assert rates_at(TGT, NON, threshold_at_far(NON, 0.5))[0] == pytest.approx(0.5)
    # 29% of 100 must allow 29 acceptances despite 0.29 * 100 = 28.999999999999996.
    non = np.arange(100, dtype=float)
    assert rates_at(TGT, non, threshold_at_far(non, 0.29))[0] == pytest.approx(0.29)


def test_bad_scores_rejected() -> None:
    """Empty or non-finite score arrays and out-of-range parameters raise IdmeError."""
    with pytest.raises(IdmeError, match="no target"):
        eer(np.array([]), NON)
    with pytest.raises(IdmeError, match="NaN"):
        eer(TGT, np.array([0.1, np.nan]))
    with pytest.raises(IdmeError, match="p_target"):
        min_dcf(TGT, NON, 1.0)
    with pytest.raises(IdmeError, match="far_target"):
        threshold_at_far(NON, 1.0)


def test_summarize_to_dict() -> None:
    """summarize bundles EER and minDCF per prior into a JSON-ready dict."""
    d = summarize(TGT, NON, p_targets=(0.5,)).to_dict()
    assert d["n_target"] == 4 and d["n_nontarget"] == 6
    assert d["eer"] == pytest.approx(0.25)
    assert d["min_dcf"]["0.5"]["value"] == pytest.approx(5 / 12)


def test_plots_write_png(tmp_path: Path) -> None:
    """plot_det and plot_stage_costs write non-empty PNG files."""
    rng = np.random.default_rng(0)
    tgt = rng.normal(0.6, 0.1, 300)
    non = rng.normal(0.1, 0.1, 3000)
    out = plot_det(tgt, non, tmp_path / "plots" / "det.png", thresholds={"me": 0.45, "named": 0.35})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    out2 = plot_stage_costs({"vad": 0.4, "embed": [3.0, 3.5, 9.0], "identify": 0.1}, tmp_path / "stages.png")
    assert out2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out2.stat().st_size > 5_000


# ------------------------------------------------------------------------------------------------ trials


def _write_clips(root: Path, names: list[str]) -> None:
    """Small distinct 16 kHz wav files (0.2 s, a different tone each)."""
    t = np.arange(3200) / 16000
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t).astype(np.float32), 16000)


class CountingEmbedder:
    """Embeds a file as a 16-bin magnitude spectrum summary of its audio, counting calls."""

    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> np.ndarray:
        self.calls.append(path)
        x, _ = sf.read(path, dtype="float32")
        spec = np.abs(np.fft.rfft(x))[:1600]
        return spec.reshape(16, 100).sum(axis=1).astype(np.float32)


def test_read_trials_voxceleb(tmp_path: Path) -> None:
    """A VoxCeleb list with relative paths resolves against its own directory; 1/0 become target flags."""
    _write_clips(tmp_path / "audio", ["a/1.wav", "a/2.wav", "b/1.flac"])
    lst = tmp_path / "audio" / "trials.txt"
    lst.write_text("# comment\n1 a/1.wav a/2.wav\n\n0 a/1.wav b/1.flac\n")
    trials = read_trials(lst)
    root = (tmp_path / "audio").resolve()
    assert trials == [
        Trial(root / "a/1.wav", root / "a/2.wav", True),
        Trial(root / "a/1.wav", root / "b/1.flac", False),
    ]


def test_read_trials_kaldi_ids_get_extensions(tmp_path: Path) -> None:
    """Kaldi 'a b target|nontarget' lines with extension-less ids find the .wav/.flac files."""
    _write_clips(tmp_path, ["spk1-utt1.wav", "spk1-utt2.flac", "spk2-utt1.wav"])
    lst = tmp_path / "trials"
    lst.write_text("spk1-utt1 spk1-utt2 target\nspk1-utt1 spk2-utt1 nontarget\n")
    trials = read_trials(lst)
    assert [t.test.name for t in trials] == ["spk1-utt2.flac", "spk2-utt1.wav"]
    assert [t.target for t in trials] == [True, False]


def test_read_trials_errors(tmp_path: Path) -> None:
    """Malformed lines name their line number; a missing audio file raises AudioError naming it."""
    _write_clips(tmp_path, ["x.wav", "y.wav"])
    bad = tmp_path / "bad.txt"
    bad.write_text("1 x.wav y.wav\n1 x.wav\n")
    with pytest.raises(IdmeError, match=r"bad.txt:2: expected 3 fields"):
        read_trials(bad)
    bad.write_text("1 x.wav y.wav\n2 x.wav y.wav\n")
    with pytest.raises(IdmeError, match=r"bad.txt:2: no trial label"):
        read_trials(bad)
    bad.write_text("1 x.wav y.wav\nx.wav y.wav target\n")
    with pytest.raises(IdmeError, match=r"bad.txt:2: kaldi line in a voxceleb"):
        read_trials(bad)
    bad.write_text("1 x.wav y.wav\n0 x.wav gone.wav\n")
    with pytest.raises(AudioError, match=r"bad.txt:2: audio file 'gone.wav' not found"):
        read_trials(bad)


@pytest.mark.skipif(not LIBRI_TRIALS.is_file(), reason="shared LibriSpeech trial list not present")
def test_read_shared_librispeech_trials() -> None:
    """The shared test-other list parses into 4,950 pairs of 100 files, 450 of them target trials."""
    trials = read_trials(LIBRI_TRIALS)
    assert len(trials) == 4950
    assert sum(t.target for t in trials) == 450
    assert len({p for t in trials for p in (t.enroll, t.test)}) == 100


def test_score_trials_cosine_and_cache(tmp_path: Path) -> None:
    """Each file is embedded once; a second run is served from disk; a new encoder version re-embeds."""
    names = ["s1a.wav", "s1b.wav", "s2a.wav", "s3a.wav"]
    _write_clips(tmp_path, names)
    lst = tmp_path / "trials.txt"
    lst.write_text("1 s1a.wav s1b.wav\n0 s1a.wav s2a.wav\n0 s2a.wav s3a.wav\n0 s1b.wav s3a.wav\n")
    trials = read_trials(lst)
    emb = CountingEmbedder()
    cache_dir = tmp_path / "cache"
    scores, labels = score_trials(trials, emb, EmbeddingCache(cache_dir, "toy", "1", pipeline="vad=off"))
    assert len(emb.calls) == 4  # 4 distinct files, 8 trial sides
    np.testing.assert_array_equal(labels, [True, False, False, False])
    vec = {p.name: emb(p) for p in list(emb.calls)}
    unit = {k: v / np.linalg.norm(v) for k, v in vec.items()}
    assert scores[1] == pytest.approx(float(unit["s1a.wav"] @ unit["s2a.wav"]))
    emb.calls.clear()

    again, _ = score_trials(trials, emb, EmbeddingCache(cache_dir, "toy", "1", pipeline="vad=off"))
    assert emb.calls == []  # fresh cache object: everything came from the .npy files
    np.testing.assert_allclose(again, scores)

    score_trials(trials, emb, EmbeddingCache(cache_dir, "toy", "2", pipeline="vad=off"))
    assert len(emb.calls) == 4  # another encoder version shares nothing
    emb.calls.clear()
    score_trials(trials, emb, EmbeddingCache(cache_dir, "toy", "1", pipeline="vad=on"))
    assert len(emb.calls) == 4  # nor does another pipeline
    emb.calls.clear()

    # Rewriting a file changes its stamp: only that file is embedded again.
    st = (tmp_path / "s3a.wav").stat()
    os.utime(tmp_path / "s3a.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    score_trials(trials, emb, EmbeddingCache(cache_dir, "toy", "1", pipeline="vad=off"))
    assert [p.name for p in emb.calls] == ["s3a.wav"]


def test_score_trials_rejects_bad_embeddings(tmp_path: Path) -> None:
    """A zero embedding or one of a different size raises IdmeError naming the file."""
    _write_clips(tmp_path, ["a.wav", "b.wav"])
    trials = [Trial(tmp_path / "a.wav", tmp_path / "b.wav", True)]
    with pytest.raises(IdmeError, match="zero"):
        score_trials(trials, lambda p: np.zeros(4))
    with pytest.raises(IdmeError, match=r"b.wav has shape \(3,\)"):
        score_trials(trials, lambda p: np.ones(4) if p.name == "a.wav" else np.ones(3))


def test_split_scores() -> None:
    """split_scores separates target from non-target scores by label."""
    tgt, non = split_scores(np.array([0.9, 0.1, 0.8]), np.array([True, False, True]))
    np.testing.assert_array_equal(tgt, [0.9, 0.8])
    np.testing.assert_array_equal(non, [0.1])


def test_det_draws_zero_error_rates_inside_the_axes() -> None:
    """A rate of 0 (perfectly separated scores, EER 0) lands on the DET axes' edge, not off the plot."""
    from idme.eval.plots import _DET_LIMITS, _probit

    lo, hi = _probit(np.asarray(_DET_LIMITS))
    drawn = _probit(np.asarray([0.0, 1e-9, 0.01, 1.0]))
    assert np.all(np.isfinite(drawn)) and lo <= drawn[0] <= hi and lo <= drawn[1] <= hi

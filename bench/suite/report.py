"""docs/benchmarks.md and docs/stage_costs.png from a BenchResult."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from idme.eval.plots import plot_stage_costs

from .runner import MAX_P50_GROWTH_MS, BenchResult
from .speed import STAGES, FileModeResult


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table; None cells print as an em dash."""
    def cell(x: object) -> str:
        return "—" if x is None else str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x: float | None, digits: int = 1) -> str | None:
    return None if x is None else f"{100 * x:.{digits}f}%"


def num(x: float | None, fmt: str = ".1f") -> str | None:
    return None if x is None else format(x, fmt)


# ------------------------------------------------------------------------------------------------ sections


def machine_section(r: BenchResult) -> str:
    m = r.machine
    v = m.versions
    return "\n".join([
        f"Run: {m.date}, `{r.command}`, {r.elapsed_s / 60:.1f} min, commit {m.commit or 'unknown'}.",
        f"Machine: {m.cpu_count} logical CPUs ({m.cpu_model}), {m.platform}, Python {m.python}; "
        f"load average at start {m.load_avg_start[0]:.2f} / {m.load_avg_start[1]:.2f} / "
        f"{m.load_avg_start[2]:.2f} (1/5/15 min), at the end "
        f"{' / '.join(f'{x:.2f}' for x in r.load_avg_end or ())}. The machine is shared: timings include "
        "other people's jobs and move by tens of percent between runs.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
    ])


def which(runs: Sequence) -> str:
    """"meeting02, meeting04" for up to three meetings, else "6 meetings"."""
    return ", ".join(r.meeting for r in runs) if len(runs) <= 3 else f"{len(runs)} meetings"


def rtf_row(f: FileModeResult) -> list:
    """config, meetings, audio s, wall s, RTF, ASR RTF, load s, notes."""
    notes = f.note
    if f.asr != "none":
        texted, finals = sum(x.text_segments for x in f.runs), sum(x.final_segments for x in f.runs)
        notes = f"{texted}/{finals} segments with text. {notes}".strip()
    asr_rtf = None if f.asr == "none" else f"{f.stage_ms_per_s()['asr'] / 1000:.3f}"
    return [f.label, which(f.runs), f"{f.audio_s:.0f}", f"{f.wall_s:.1f}", f"**{f.rtf:.3f}**", asr_rtf,
            num(f.load_s, ".2f"), notes]


def processing_section(r: BenchResult) -> str:
    base = next(f for f in r.file_mode if f.asr == "none")
    with_asr = [f for f in r.file_mode if f.asr != "none" and f.runs]
    columns = [base]
    if with_asr:
        # Labels only on the recognisers' meetings too: stage costs differ between meetings.
        columns += [base.subset({x.meeting for x in with_asr[0].runs})] + with_asr
    header = ["stage, ms per s of audio"] + [f"{f.label}: {which(f.runs)}" for f in columns]
    rows = [[name] + [None if k == "asr" and f.asr == "none" else num(f.stage_ms_per_s()[k], ".2f")
                      for f in columns] for k, name in STAGES.items()]
    rtf_rows = [rtf_row(f) for f in columns]
    rtf_rows += [[f.label, None, None, None, None, None, None, f"skipped: {f.skipped}"]
                 for f in r.file_mode if f.skipped]
    return "\n\n".join([
        "## 1. Processing cost, file mode\n\nSame path as `idme listen --file`: `Pipeline(FileSource(wav), "
        "Labeller(...), transcriber=make_transcriber(asr)[0])`. Stage times are the Labeller's own counters "
        "(compute seconds per second of audio, pooled over the meetings; the stages run on two threads, the "
        "recogniser on a third, so they overlap and do not add up to the wall time; the re-clustering at the "
        "end of a file is in none of them). With a recogniser the labelling stages get slower: two cores are "
        "shared with it.",
        table(header, rows),
        "Real-time factor (wall time / audio time; below 1 keeps up with speech). *ASR RTF* is the "
        "recogniser's compute time per second of audio; *load* is reading its model, once per process.",
        table(["config", "meetings", "audio s", "wall s", "RTF", "ASR RTF", "load s", "notes"], rtf_rows),
        "![per-stage cost](stage_costs.png)",
    ])


def quality_section(r: BenchResult) -> str:
    q, a = r.meetings, r.ami
    rows = []
    for m in q.meetings:
        s = m.scores
        rows.append([m.meeting, m.n_speakers, m.named, m.noise_snr_db, pct(s["der"]), pct(s["miss"]), pct(s["fa"]),
                     pct(s["confusion"]), pct(s["me_recall"]), pct(s["false_me"]),
                     f"{s['n_hyp_labels']}/{s['n_ref_speakers']}", "yes" if not m.disagree else
                     "NO: " + ", ".join(m.disagree)])
    mean = q.mean()
    rows.append(["**mean**", None, None, None] + [f"**{pct(mean[k])}**" for k in
                                                  ("der", "miss", "fa", "confusion", "me_recall", "false_me")]
                + [None, "all agree" if q.agree else "**DISAGREE**"])
    p = a.pooled
    ami_rows = [[p["n_files"], f"{a.audio_s:.0f}", pct(p["der"]), pct(p["miss"]), pct(p["fa"]),
                 pct(p["confusion"]), f"{p['n_hyp_labels']}/{p['n_ref_speakers']}", ", ".join(a.kinds)]]
    return "\n\n".join([
        "## 2. Labelling quality\n\n### meetings-dev (file mode, labels only)\n\nThe owner (`me`) and every "
        "`named` person of meta.json enrolled from their `enroll/` clips, then the meeting labelled and scored "
        "by `idme.eval.der.score_meeting` (10 ms frames, 0.25 s collar); the same JSONL was scored by "
        f"`{Path(q.scorer).name}` in a subprocess and the two must agree to 1e-4 (*tool agrees*). "
        "*me_recall*: share of the owner's speech labelled Me; *false_me*: share of other people's speech "
        "labelled Me; *labels*: hypothesis labels / reference speakers.",
        table(["meeting", "speakers", "named", "noise dB", "DER", "miss", "FA", "confusion", "me_recall",
               "false_me", "labels", "tool agrees"], rows),
        "### AMI excerpts (nobody enrolled)\n\nEach UEM-listed excerpt labelled with an empty profile list "
        "(every talker is an unknown \"Speaker N\"), scored on the UEM regions with `score_rttm_set` "
        "(overlapping reference speech counted per speaker, md-eval style: on a frame where two people talk, "
        "idme's single label misses at least one). Pooled = total errors / total scored speech.",
        table(["files", "audio s", "DER", "miss", "FA", "confusion", "labels/speakers (summed)", "label kinds"],
              ami_rows),
    ])


def latency_section(r: BenchResult) -> str:
    rows = []
    for x in r.latency:
        d = x.to_dict()
        lab, itm = d["label_latency_ms"], d["interim_latency_ms"]
        text = None if x.asr == "none" else f"{x.text_segments}/{x.final_segments}"
        rows.append([x.label, f"x{x.speed:g}", ", ".join(x.meetings), lab["n"], f"**{num(lab['p50'])}**",
                     num(lab["p95"]), num(lab["max"]), itm["n"], num(itm["p50"]), num(itm["p95"]), text,
                     x.skipped or x.note])
    growth = r.latency_growth_ms()
    verdict = "not measured" if growth is None else (
        f"{growth:+.1f} ms ({'within' if growth <= MAX_P50_GROWTH_MS else '**exceeds**'} the "
        f"{MAX_P50_GROWTH_MS:.0f} ms budget)")
    speed_note = "" if r.plan.latency_speed == 1.0 else (
        f"\n\n**Played at x{r.plan.latency_speed:g}: latencies are not comparable to live use** (audio arrives "
        "faster than speech, so queues fill and the recogniser falls behind); this run only exercises the "
        "live path. Run without `--quick` for real-time numbers.")
    return "\n\n".join([
        "## 3. Live label latency\n\n`idme listen --realtime` path: `RealtimeFileSource(wav, speed)` releases "
        "30 ms blocks at their real-time deadline into the live Pipeline. Label latency = `latency_ms` of each "
        "segment's first final event: from the arrival of the last voiced audio of the segment (the end of the "
        "speech) to its label, so it includes the 150 ms VAD end pause that closes a segment, then queueing, "
        "change split, embedding and the FAISS decision. "
        "Interim labels (every second inside a long turn) are listed apart. *text* = segments whose text "
        "arrived / final segments (live mode drops text, never labels, when the recogniser falls behind)."
        + speed_note,
        table(["config", "speed", "meetings", "segments", "label p50 ms", "p95", "max", "interims",
               "interim p50", "p95", "text", "notes"], rows),
        f"Label p50 growth with the recogniser: {verdict}.",
    ])


def oneoff_section(r: BenchResult) -> str:
    c = r.costs.to_dict()
    ops = [("enrol 3 takes x 5 s (`Idme.enroll`: VAD trim, quality gate, embed, consistency and distinctness "
            "checks, encrypted save, replay fingerprints)", "enrol_3x5s_ms", c["enrol_source"]),
           (f"verify a 3 s utterance 1:1 (`Idme.verify`: VAD trim, condition, embed, {c['verify_scoring']}, "
            "audit line)", "verify_3s_ms", c["verify_source"])]
    rows = [[what, c[key]["median"], c[key]["min"], c[key]["max"], source] for what, key, source in ops]
    rss = "\n".join(f"- after {k}: {v:.0f} MiB" for k, v in r.rss_after_mib.items())
    return "\n\n".join([
        f"## 4. Enrolment, verification, memory\n\nThrough the library API, CAM++ loaded once beforehand (session "
        f"creation {c['encoder_load_s']:.2f} s), audio decoded to 16 kHz before the clock starts, in a home that "
        f"already holds its vault key and one other profile. Median of {c['enrol_3x5s_ms']['n']} repeats after "
        f"a warm-up, ms. The first enrolment into an empty home also creates the vault key (Argon2id): "
        f"{c['first_enrol_ms']:.0f} ms.",
        table(["operation", "median ms", "min", "max", "audio"], rows),
        f"Peak RSS of the whole run (`resource.getrusage`; the recognisers stay loaded once used): "
        f"**{r.peak_rss_mib:.0f} MiB**.\n\n{rss}",
    ])


def robustness_section(r: BenchResult) -> str:
    parts = ["## 5. Speaker verification robustness (CAM++)\n\nCosine scoring of VAD-trimmed speech. The VAD "
             "runs on the clean signal and the degradation is applied to the speech, so these rows isolate the "
             "encoder. Crops keep the middle of the test side's speech; *8 kHz* band-limits both sides "
             "(soxr down to 8 kHz, then idme's StreamResampler back to 16 kHz, as an 8 kHz source would be); "
             "noise is white Gaussian on the test side at the stated SNR against the segment's power. "
             "FAR/FRR are at the shipped threshold idme applies to the condition (`me`, or `narrowband` when "
             "both sides are telephone-rate, column *threshold*); minDCF at P_target = 0.01."]
    for ds in r.robustness:
        rows = [[c.condition, f"{c.test_speech_s:.2f}", f"**{pct(c.eer, 2)}**", f"{c.eer_threshold:.3f}",
                 f"{c.min_dcf:.3f}", f"{c.threshold:.2f}", pct(c.far_at_me, 2), pct(c.frr_at_me, 2)]
                for c in ds.conditions]
        n = ds.conditions[0] if ds.conditions else None
        counts = f"{n.n_target} target / {n.n_nontarget} non-target trials" if n else ""
        untrimmed = f" Embedded untrimmed (VAD found < 1 s of speech): {', '.join(ds.untrimmed)}." \
            if ds.untrimmed else ""
        parts.append(f"### {ds.dataset}\n\n{ds.description}; {counts}; `me` threshold {ds.me_threshold:.2f}."
                     + untrimmed)
        parts.append(table(["condition", "test speech s", "EER", "EER threshold", "minDCF 0.01",
                            "threshold", "FAR", "FRR"], rows))
    return "\n\n".join(parts)


def render_markdown(r: BenchResult, previous: str | None = None) -> str:
    """The whole docs/benchmarks.md. ``previous``: the page as it is now; its "## Other benchmarks" part
    (figures other scripts' authors write by hand, from its heading to the end) is kept as it is, so a
    regeneration only replaces what bench/run.py measured."""
    intro = ("# Benchmarks\n\nProduced by `python bench/run.py --data ../shared/data` (see bench/README.md for "
             "what each number means); raw numbers in `bench/results/latest.json`. Sections 1-5 are regenerated "
             "on every run; \"Other benchmarks\" and what follows it is kept as written.")
    other = OTHER_BENCHMARKS
    if previous and OTHER_HEADING in previous:
        other = previous[previous.index(OTHER_HEADING):].rstrip("\n")
    return "\n\n".join([intro, machine_section(r), processing_section(r), quality_section(r), latency_section(r),
                        oneoff_section(r), robustness_section(r), other]) + "\n"


OTHER_HEADING = "## Other benchmarks"


#: Benchmarks with their own scripts and pages; listed here so that regenerating this page keeps them found.
OTHER_BENCHMARKS = """## Other benchmarks

Each of these has its own script and page (not produced by `bench/run.py`, so `make bench` never overwrites them):

- the server under load: `python bench/serve.py ../shared/data ...`, in `docs/benchmarks-server.md`;
- overlap-aware segmentation on AMI: `python bench/segmentation.py --data ../shared/data`, in `docs/segmentation.md`;
- identification at scale and score normalisation: `bench/identify_scale.py`, `bench/score_norm.py`;
- word error rate of every installed recogniser: `bench/wer.py --data ../shared/data`;
- inputs people have (formats, no owner, speaker counts): `bench/everyday.py --data ../shared/data`."""


def render_plot(r: BenchResult, out_png: Path) -> Path:
    """Per-stage cost bars (median over meetings, whisker at the 95th percentile), ms per s of audio."""
    base = next(f for f in r.file_mode if f.asr == "none")
    costs: dict[str, list[float]] = {name: base.per_meeting_ms_per_s(k) for k, name in STAGES.items() if k != "asr"}
    for f in r.file_mode:
        if f.asr != "none" and f.runs:
            costs[f"ASR: {f.label}"] = f.per_meeting_ms_per_s("asr")
    return plot_stage_costs(costs, out_png, title=f"Compute per second of audio, file mode "
                            f"({r.machine.cpu_count} CPUs, {r.machine.cpu_model})", unit="ms per s of audio")

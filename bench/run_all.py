"""Run every benchmark and write results/bench/*.json and results/bench/summary.md (each figure beside its goal).

    python bench/run_all.py [--quick] [--device auto] [--threads 1] [--skip dryrun,kenlm] [--only train,scaling]
                            [--summary-only]

Each benchmark runs as its own process (bench/bench_*.py --out results/bench/NAME.json), one after another, so
their thread settings and memory do not interfere; a benchmark that fails is reported in the summary and the rest
still run. --summary-only rewrites the summary from the JSON files already there (e.g. after bench/gpu.sh).
"""

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, human_seconds, write_json
from rnnlens.io import atomic_write_text

BENCH = Path(__file__).resolve().parent
CPU_BUDGET_S = 15 * 60


def steps(args):
    """(name, script, extra arguments) in running order; the other stages' scripts only when present."""
    dev = ["--device", args.device]
    threads = ["--threads", str(args.threads)]
    # at least 2 steps per timed run: a 1-step run of a large model is all first-step allocation noise
    train = ["--grid", "small"] if args.quick else ["--min-steps", "2"]
    plan = [
        ("train", "bench_train.py", train + dev + threads),
        # beyond the paper: the transformer and the LRU through train() against the same bare loop
        ("train_beyond", "bench_train.py", ["--points", "transformer-1x64,lru-1x64" if args.quick else
                                            "transformer-1x64,transformer-2x128,lru-1x64,lru-2x128",
                                            "--no-ceiling", "--min-steps", "2"] + dev + threads),
        ("scaling", "bench_scaling.py", ["--train", str(RESULTS / "train.json"), "--plot", str(RESULTS / "scaling.png")]),
        ("eval", "bench_eval.py", dev + threads + (["--models", "lstm-1x64"] if args.quick else [])),
        ("internals", "bench_internals.py", ["--device", "cuda" if args.device == "cuda" else "cpu"] + threads
         + (["--sizes", "1x128", "--steps", "200"] if args.quick else [])),
        ("oracles", "bench_oracles.py", []),
        ("kenlm", "bench_kenlm.py", ["--train-bytes", "200000", "--orders", "1,3,5"] if args.quick else []),
        ("brackets", "bench_brackets.py", []),
        ("features", "bench_features.py", ["--repeats", "2"] if args.quick else []),
        ("dryrun", "bench_dryrun.py", []),
        # the explorer: a small model trained a few steps, end to end; and a store of the issue's 3x512 shape
        # with made-up activations (no CPU here builds a real one in the budget)
        ("explore", "bench_explore.py", ["--layers", "1", "--hidden", "128" if args.quick else "256", "--train-steps",
                                         "2"]),
        ("explore3x512", "bench_explore.py", ["--synthetic", "--layers", "3", "--hidden", "512"]),
    ]
    return [(name, BENCH / script, extra) for name, script, extra in plan]


def run_step(name, script, extra, timeout):
    out = RESULTS / f"{name}.json"
    cmd = [sys.executable, str(script), *extra, "--out", str(out)]
    print(f"\n=== {name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout} s"
    seconds = time.perf_counter() - t0
    print(f"=== {name}: {status} in {seconds:.0f} s", flush=True)
    return {"status": status, "seconds": seconds}


# ---------------------------------------------------------------- summary

def load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def geo_mean(values):
    values = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def summary(runs, total_s, device_label):
    lines, goals, details = [], [], []
    train = load("train")
    if train:
        rows = train["results"]
        ratios = [r["ratio"] for r in rows]
        worst = min(rows, key=lambda r: r["ratio"])
        below = [r for r in rows if r["ratio"] < 0.95]
        within_noise = sum(r["ratio"] >= 1 / (1 + r.get("bare_spread", 0)) - 1e-9 for r in below)
        goals.append(("Training chars/s, rnnlens.train / bare PyTorch loop (every grid point)",
                      f"min {worst['ratio']:.3f} ({worst['model']}), geometric mean {geo_mean(ratios):.3f} over "
                      f"{len(ratios)} points, {len(ratios) - len(below)}/{len(ratios)} points >= 0.95"
                      + (f"; of the {len(below)} below, {within_noise} within their run-to-run spread" if below else ""),
                      ">= 0.95 at every point", verdict(min(ratios) >= 0.95)))
        large = [r for r in rows if r["size"] >= 256 and "ceiling_fraction" in r]
        if large:
            fr = [r["ceiling_fraction"] for r in large]
            low = min(large, key=lambda r: r["ceiling_fraction"])
            cpu = train["device"] == "cpu"
            by_arch = ", ".join(f"{a} {min(r['ceiling_fraction'] for r in large if r['arch'] == a):.2f}"
                                for a in ("rnn", "lstm", "gru") if any(r["arch"] == a for r in large))
            goals.append(("Training FLOP/s (6 x matmul params x chars/s) / matmul ceiling, sizes >= 256",
                          f"min {low['ceiling_fraction']:.2f} ({low['model']}; bare loop "
                          f"{low['bare_ceiling_fraction']:.2f}), mean {sum(fr) / len(fr):.2f}, "
                          f"{sum(x >= 0.75 for x in fr)}/{len(fr)} points >= 0.75; min by arch: {by_arch}",
                          ">= 0.75 on CPU", verdict(min(fr) >= 0.75) if cpu else "n/a (goal is for CPU)"))
        if "projection" in train:
            p = train["projection"]
            goals.append((f"Projected paper grid, {p['models']} models x {p['epochs']} epochs, one at a time, "
                          f"on this device", human_seconds(p["total_s"]),
                          "< 2 h for everything on one H100-class GPU", "n/a (projection)"))
        details.append(train_table(train))
    eval_ = load("eval")
    if eval_:
        rows = eval_["results"]
        worst = min(rows, key=lambda r: r["ratio"])
        goals.append(("Evaluation over a full test split, predict_test / bare fused inference",
                      f"min {worst['ratio']:.3f} ({worst['model']}; {worst['workflow_test_chars_per_s']:,.0f} "
                      "test chars/s)", ">= 0.9 [ours; the issue sets none]", verdict(worst["ratio"] >= 0.9)))
        details.append(eval_table(eval_))
    internals = load("internals")
    if internals:
        rows = internals["results"]
        worst = min(rows, key=lambda r: r["ratio"])
        goals.append(("Exact internals (all gates and cells) / fused inference",
                      f"min {worst['ratio']:.2f} ({worst['arch']}-{worst['layers']}x{worst['hidden']} hidden, "
                      f"{worst['method']})", ">= 0.5", verdict(worst["ratio"] >= 0.5)))
        details.append(internals_table(internals))
    oracles = load("oracles")
    if oracles:
        seconds = oracles.get("pipeline_s")
        goals.append((f"Oracle error analysis on {oracles.get('test_bytes', 0):,} test chars "
                      "(whole pipeline: words, n-gram files, peeling)", f"{seconds:.2f} s", "a few seconds (<= 5 s)",
                      verdict(seconds is not None and seconds <= 5)))
        details.append(generic_section("Oracles", oracles))
    kenlm = load("kenlm")
    if kenlm and "skipped" in kenlm:
        goals.append(("KenLM build time, peak memory and scoring speed per order", f"skipped: {kenlm['skipped']}",
                      "report", "n/a"))
    elif kenlm:
        top = max(kenlm["results"], key=lambda r: r["order"])
        goals.append((f"KenLM on {kenlm['train_bytes']:,} training bytes: build (lmplz + build_binary) and peak memory "
                      "per order; scoring chars/s vs bare KenLM full_scores",
                      f"order {top['order']}: {top['build_s']:.1f} s, {max(top['lmplz_peak_mib'], top['build_binary_peak_mib']):,.0f} "
                      f"MiB peak; scoring {top['score_chars_per_s']:,.0f} chars/s; scoring ratio min "
                      f"{min(r['score_ratio'] for r in kenlm['results']):.2f}", "report (the issue sets no goal)", "n/a"))
        details.append(kenlm_table(kenlm))
    brackets = load("brackets")
    if brackets:
        seconds = brackets["pipeline_s"]
        goals.append((f"Bracket matching and distance curves on {brackets['test_bytes']:,} test chars "
                      f"({brackets['corpus']}, whole-corpus matching of 4 delimiters, {brackets['models']} models)",
                      f"{seconds:.2f} s", "a few seconds (<= 5 s)", verdict(seconds <= 5)))
        details.append(generic_section("Brackets", brackets))
    features = load("features")
    if features:
        goals.append((f"Character features (rnnlens.features.features_of) of {features['results'][0]['bytes']:,} "
                      f"bytes, worst of {len(features['results'])} texts", f"{features['worst_s_per_300kb']:.2f} s per "
                      f"300 KB ({features['worst_text']})", f"< {features['goal_s_per_300kb']:g} s per 300 KB",
                      verdict(features["worst_s_per_300kb"] < features["goal_s_per_300kb"])))
        details.append(generic_section("Character features", features))
    for name in ("explore", "explore3x512"):
        explore = load(name)
        if explore:
            goals.append(explore_goal(explore))
            details.append(explore_section(explore))
    dry = load("dryrun")
    if dry:
        measured = f"{dry['median_s']:.2f} s"
        if "machine_median_s" in dry:
            measured += (f" ({dry['machine_median_s']:.2f} s as installed here: the Slurm plugin's `scontrol show "
                         f"config` waits {dry['scontrol_probe_s']:.1f} s for an absent controller)")
        goals.append((f"`snakemake -n` on config.yaml ({dry['models']} models, {dry['jobs']} jobs), median of "
                      f"{len(dry['runs_s'])}", measured, "< 5 s", verdict(dry["median_s"] < 5)))
    scaling = load("scaling")
    if scaling:
        f = scaling["fit_all"]
        big = scaling.get("fit_large")
        measured = (f"log-log slope {f['loglog_slope']:.2f} (all {f['points']} points)"
                    + (f", {big['loglog_slope']:.2f} (sizes >= {scaling['large_size']})" if big else "")
                    + f"; linear fit R² {f['r2']:.3f}")
        goals.append(("Training time per epoch vs parameters", measured,
                      "~linear once matrices are large [ours: slope 0.8-1.2 at sizes >= 256]",
                      verdict(0.8 <= big["loglog_slope"] <= 1.2) if big else "n/a"))
        details.append(scaling_section(scaling))
    gpu = json.loads((RESULTS / "gpu" / "train.json").read_text()) if (RESULTS / "gpu" / "train.json").is_file() else None
    if gpu:
        section = "## GPU run (bench/gpu.sh)\n\n" + train_table(gpu, heading=False)
        for path in sorted((RESULTS / "gpu").glob("share-*.json")):
            share = json.loads(path.read_text())
            section += (f"\nSharing the GPU, {share['model']} ({share['steps']} steps per process): "
                        + ", ".join(f"K={r['k']} {r['aggregate_chars_per_s']:,} chars/s ({r['speedup']}x)"
                                    for r in share["rows"]) + ".\n")
        details.append(section)
    if runs:
        goals.append(("This benchmark run (bench/run_all.py), wall time", human_seconds(total_s),
                      "< 15 min on CPU", verdict(total_s < CPU_BUDGET_S) if device_label == "cpu" else "n/a"))

    lines.append("# Benchmarks\n")
    info = train or eval_ or {}
    lines.append(f"Machine: {info.get('device_name', platform.processor())} ({info.get('device', '?')}), "
                 f"{info.get('threads', '?')} torch thread(s), torch {info.get('torch', '?')}, "
                 f"{info.get('clock', 'wall')} clock, written {time.strftime('%Y-%m-%d %H:%M')}. Ratios are measured "
                 "side by side in one process, interleaved, best run of each side.\n")
    lines.append("| figure | measured | goal | status |\n|---|---|---|---|")
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in goals]
    if runs:
        lines.append("\nRuns: " + ", ".join(f"{k} {v['status']} ({v['seconds']:.0f} s)" for k, v in runs.items()))
    lines.append("")
    lines += details
    return "\n".join(lines) + "\n"


def train_table(train, heading=True):
    out = ["## Training throughput\n"] if heading else []
    out.append(f"{train.get('device_name')} ({train['device']}, {train.get('threads')} thread(s), {train.get('clock', 'wall')} "
               f"clock, TF32 {'on' if train.get('tf32') else 'off'}); batch {train['batch']} x {train['seq_len']}; "
               "best of the interleaved runs (rounds) per side. Spread: how much the bare loop's own runs differed "
               "(max/min - 1), the noise floor of that point's ratio. Fraction: rnnlens.train (bare loop) FLOP/s over "
               "the matmul ceiling at the point's step shapes.\n")
    check = train.get("check_cpu")
    if check and "results" in check:
        out.append(f"Device vs CPU, same weights and batch, one forward+backward: "
                   f"{'agree' if check['passed'] else '**DISAGREE**'} ({check['tolerance']}); "
                   + "; ".join(f"{r['model']} |Δloss| {r['loss_abs_diff']:.1e}, grads {r['grad_max_rel_diff']:.1e}"
                               for r in check["results"]) + ".\n")
    out.append("| model | hidden | params | steps x rounds | rnnlens.train chars/s | bare chars/s | ratio | spread | "
               "GFLOP/s | ceiling GFLOP/s | fraction | WP epoch | LK epoch |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in train["results"]:
        ceiling = r.get("ceiling_flops")
        out.append(f"| {r['model']} | {r['hidden']} | {r['params']:,} | {r['steps']} x {r['repeats']} | "
                   f"{r['workflow_chars_per_s']:,.0f} | {r['bare_chars_per_s']:,.0f} | {r['ratio']:.3f} | "
                   f"{r.get('bare_spread', float('nan')):.0%} | {r['train_flops'] / 1e9:.1f} | "
                   + (f"{ceiling / 1e9:.1f} | {r['ceiling_fraction']:.2f} ({r['bare_ceiling_fraction']:.2f})"
                      if ceiling else "- | -")
                   + f" | {human_seconds(r['wp_epoch_s'])} | {human_seconds(r['lk_epoch_s'])} |")
    if "projection" in train:
        p = train["projection"]
        out.append(f"\nProjected paper grid: {human_seconds(p['total_s'])} (War and Peace {human_seconds(p['warpeace_s'])}, "
                   f"Linux {human_seconds(p['linux_s'])}); {p['note']}.")
    return "\n".join(out) + "\n"


def eval_table(eval_):
    out = [f"## Evaluation throughput\n\nCorpus: {eval_['corpus']}.\n",
           "| model | hidden | streams x columns | test chars | predict_test s | bare fused s | test chars/s | ratio |",
           "|---|---|---|---|---|---|---|---|"]
    for r in eval_["results"]:
        out.append(f"| {r['model']} | {r['hidden']} | {r['streams']} x {r['columns']} | {r['test_chars']:,} | "
                   f"{r['workflow_s']:.2f} | {r['bare_s']:.2f} | {r['workflow_test_chars_per_s']:,.0f} | {r['ratio']:.3f} |")
    return "\n".join(out) + "\n"


def internals_table(internals):
    out = ["## Internals vs fused inference\n", "| model | method | fused chars/s | internals chars/s | ratio |",
           "|---|---|---|---|---|"]
    for r in internals["results"]:
        out.append(f"| {r['arch']}-{r['layers']}x{r['hidden']} (hidden) | {r['method']} | {r['fused_chars_per_s']:,.0f} | "
                   f"{r['internals_chars_per_s']:,.0f} | {r['ratio']:.2f} |")
    return "\n".join(out) + "\n"


def explore_label(e):
    how = "made-up activations" if e.get("synthetic") else f"trained {e['train_steps']} steps"
    return f"{e['model']} ({how}), {e['test_positions']:,} test positions of {e['corpus']}"


def explore_goal(e):
    s = e["search"]
    return (f"Explorer hypothesis search over all {s['candidates']} cells, {explore_label(e)}",
            f"median {s['median_round_trip_ms']:.0f} ms, max {s['max_round_trip_ms']:.0f} ms (first {s['first_round_trip_ms']:.0f} ms)",
            "< 1 s for a 3x512 model on War and Peace", verdict(s["max_round_trip_ms"] < 1000))


def explore_section(e):
    b = e["browser"]
    out = [f"## Explorer: {explore_label(e)}\n",
           f"- store: {e['store_bytes'] / 2**20:,.1f} MiB ({e['tracks']:,} uint8 tracks), "
           f"{'written' if e.get('synthetic') else 'built'} in {e['build_s']:.1f} s"]
    if "skipped" in b:
        out.append(f"- browser: skipped ({b['skipped']})")
    else:
        out.append(f"- first coloured render {b['first_render_ms']:.0f} ms after navigation; one screen draws in "
                   f"{b['one_screen_draw_ms']:.1f} ms; scrolling {b['scroll_chars']:,} characters: {b['scroll_frames']} "
                   f"frames, {b['scroll_ms']:.0f} ms of drawing, slowest frame {b['scroll_max_frame_ms']:.1f} ms")
    out.append("- searches: " + "; ".join(f"[{q['start']}, {q['end']}) {q['units']} units {q['matches']} matches "
                                          f"{q['round_trip_ms']:.0f} ms" for q in e["search"]["queries"]))
    a = e.get("ablation")
    if a:
        out.append(f"- ablation (unit page toggle, {a['positions']:,} positions): first unit {a['first_s']:.1f} s "
                   f"(with the model's training means and own predictions), another unit {a['next_unit_s']:.1f} s, "
                   f"another mode {a['next_mode_s']:.1f} s; then cached: strip {a['strip_ms']:.0f} ms, predictions "
                   f"under the cursor median {a['predict_median_ms']:.1f} ms")
    return "\n".join(out) + "\n"


def kenlm_table(kenlm):
    out = [f"## KenLM\n\nCorpus: {kenlm['corpus']}, first {kenlm['train_bytes']:,} training bytes; "
           f"{kenlm['test_bytes']:,} test bytes scored; -S {kenlm['memory_option']}, {kenlm['binary_type']} binary. "
           f"Peak memory: {kenlm['note']}. Scoring ratio: rnnlens.ngram.score over KenLM's bare full_scores on the "
           "same (pre-encoded) stream.\n",
           "| order | n-grams | lmplz s | build_binary s | lmplz peak MiB | build_binary peak MiB | binary MiB | "
           "scoring chars/s | bare chars/s | ratio | test nats/char |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in kenlm["results"]:
        out.append(f"| {r['order']} | {r['n_ngrams']:,} | {r['lmplz_s']:.1f} | {r['build_binary_s']:.1f} | "
                   f"{r['lmplz_peak_mib']:,.0f} | {r['build_binary_peak_mib']:,.0f} | {r['binary_mib']:.1f} | "
                   f"{r['score_chars_per_s']:,.0f} | {r['bare_score_chars_per_s']:,.0f} | {r['score_ratio']:.2f} | "
                   f"{r['test_loss_nats']:.3f} |")
    return "\n".join(out) + "\n"


def scaling_section(scaling):
    f = scaling["fit_all"]
    out = ["## Cost vs size\n",
           f"Seconds per War and Peace epoch = {f['intercept_s']:.2f} + {f['seconds_per_param'] * 1e6:.3f} per million "
           f"parameters (R² {f['r2']:.3f}); log-log slope {f['loglog_slope']:.2f}."]
    for arch in ("rnn", "lstm", "gru"):
        if f"fit_{arch}" in scaling:
            out.append(f"{arch}: log-log slope {scaling[f'fit_{arch}']['loglog_slope']:.2f}.")
    out.append(f"\n![cost vs size]({Path(scaling['plot']).name})")
    return "\n".join(out) + "\n"


def generic_section(title, data):
    """Another script's JSON as it is: scalars as a list, a list of records as a table."""
    out = [f"## {title}\n"]
    records = next((v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)), None)
    for key, value in data.items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            out.append(f"- {key}: {value:,.4g}" if isinstance(value, float) else f"- {key}: {value}")
    if records:
        keys = [k for k in records[0] if not isinstance(records[0][k], (list, dict))]
        out.append("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
        for rec in records:
            out.append("| " + " | ".join(f"{rec.get(k):,.4g}" if isinstance(rec.get(k), float) else str(rec.get(k))
                                         for k in keys) + " |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small grid and models (a minute or two)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads of each benchmark")
    ap.add_argument("--only", help="comma-separated benchmark names to run (train, scaling, eval, internals, "
                                   "oracles, kenlm, brackets, features, dryrun, explore, explore3x512)")
    ap.add_argument("--skip", default="", help="comma-separated benchmark names to skip")
    ap.add_argument("--timeout", type=int, default=900, help="seconds allowed to each benchmark")
    ap.add_argument("--summary-only", action="store_true", help="only rewrite summary.md from the JSON files")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    skip = set(filter(None, args.skip.split(",")))
    runs = {}
    started = time.perf_counter()
    if not args.summary_only:
        for name, script, extra in steps(args):
            if (only and name not in only) or name in skip:
                continue
            if not script.is_file():
                print(f"=== {name}: {script.name} not present, skipped", flush=True)
                continue
            runs[name] = run_step(name, script, extra, args.timeout)
        write_json(RESULTS / "runs.json", {"runs": runs, "total_s": time.perf_counter() - started})
    total = time.perf_counter() - started
    import torch

    device_label = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    text = summary(runs, total, device_label)
    path = RESULTS / "summary.md"
    atomic_write_text(path, text)
    print(f"\n{text}\nwrote {path} ({human_seconds(total)} in all)", flush=True)
    failed = [k for k, v in runs.items() if v["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

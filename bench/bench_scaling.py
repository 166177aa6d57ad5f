"""How training cost grows with model size: seconds per War and Peace epoch (and per 100 x 100 step) against the
parameter count of every grid point, a straight-line fit (seconds = a + b x params), the log-log slope (1 means
cost proportional to parameters) over all points and over the large ones (size >= 256), and a plot.

    python bench/bench_scaling.py [--train results/bench/train.json] [--out results/bench/scaling.json]
                                  [--plot results/bench/scaling.png]

Without --train (or if the file is missing) it runs bench_train's paper grid first (minutes on a CPU).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from common import PAPER_GRID, RESULTS, WP_TRAIN_CHARS, write_json

STEP_CHARS = 100 * 100


def fit(params, seconds):
    params, seconds = np.asarray(params, float), np.asarray(seconds, float)
    slope, intercept = np.polyfit(params, seconds, 1)
    predicted = intercept + slope * params
    r2 = 1 - ((seconds - predicted) ** 2).sum() / max(((seconds - seconds.mean()) ** 2).sum(), 1e-300)
    loglog = float(np.polyfit(np.log(params), np.log(seconds), 1)[0]) if len(set(params)) > 1 else float("nan")
    return {"intercept_s": float(intercept), "seconds_per_param": float(slope), "r2": float(r2),
            "loglog_slope": loglog, "points": int(len(params))}


def analyse(train_result, large_size=256):
    rows = []
    for r in train_result["results"]:
        rate = r["workflow_chars_per_s"]
        rows.append({"model": r["model"], "arch": r["arch"], "layers": r["layers"], "size": r["size"],
                     "params": r["params"], "chars_per_s": rate, "step_s": STEP_CHARS / rate,
                     "wp_epoch_s": WP_TRAIN_CHARS / rate})
    params = [r["params"] for r in rows]
    epoch = [r["wp_epoch_s"] for r in rows]
    large = [(p, s) for p, s, r in zip(params, epoch, rows) if r["size"] >= large_size]
    result = {"device": train_result.get("device"), "device_name": train_result.get("device_name"),
              "threads": train_result.get("threads"), "wp_train_chars": WP_TRAIN_CHARS, "rows": rows,
              "fit_all": fit(params, epoch)}
    if len({p for p, _ in large}) > 1:
        result["fit_large"] = fit(*zip(*large))
        result["large_size"] = large_size
    for arch in sorted({r["arch"] for r in rows}):
        pts = [(r["params"], r["wp_epoch_s"]) for r in rows if r["arch"] == arch]
        if len({p for p, _ in pts}) > 1:
            result[f"fit_{arch}"] = fit(*zip(*pts))
    return result


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    markers = {1: "o", 2: "s", 3: "^"}
    for r in result["rows"]:
        ax.scatter(r["params"], r["wp_epoch_s"], color=colors.get(r["arch"], "k"), marker=markers.get(r["layers"], "x"),
                   s=28)
    params = np.array([r["params"] for r in result["rows"]], float)
    xs = np.geomspace(params.min(), params.max(), 100)
    f = result["fit_all"]
    ax.plot(xs, f["intercept_s"] + f["seconds_per_param"] * xs, "k-", lw=1,
            label=f"linear fit (R² {f['r2']:.3f})")
    if "fit_large" in result:
        g = result["fit_large"]
        ax.plot([], [], " ", label=f"log-log slope {f['loglog_slope']:.2f} (all), {g['loglog_slope']:.2f} (size ≥ "
                                   f"{result['large_size']})")
    for arch, color in colors.items():
        ax.scatter([], [], color=color, label=arch)
    for layers, marker in markers.items():
        ax.scatter([], [], color="gray", marker=marker, label=f"{layers} layer{'s' if layers > 1 else ''}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("seconds per War and Peace epoch")
    ax.set_title(f"Training cost vs size on {result.get('device_name') or result.get('device')}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    from rnnlens.io import save_figures

    save_figures(fig, [path], dpi=120, bbox_inches=None)
    return Path(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", default=str(RESULTS / "train.json"), help="bench_train.py's JSON to reuse")
    ap.add_argument("--out", default=str(RESULTS / "scaling.json"))
    ap.add_argument("--plot", default=str(RESULTS / "scaling.png"))
    ap.add_argument("--device", default="auto", help="only when measuring afresh")
    ap.add_argument("--threads", type=int, default=1, help="only when measuring afresh")
    args = ap.parse_args(argv)
    if args.train and Path(args.train).is_file():
        train_result = json.loads(Path(args.train).read_text())
        print(f"using {args.train}", flush=True)
    else:
        import bench_train

        print(f"{args.train} not found: measuring the paper grid", flush=True)
        train_result = bench_train.run(PAPER_GRID, args.device, args.threads)
    result = analyse(train_result)
    result["plot"] = str(plot(result, args.plot))
    write_json(args.out, result)
    f = result["fit_all"]
    print(f"epoch seconds = {f['intercept_s']:.2f} + {f['seconds_per_param'] * 1e6:.3f} per million parameters "
          f"(R² {f['r2']:.3f}); log-log slope {f['loglog_slope']:.2f} over {f['points']} points", flush=True)
    if "fit_large" in result:
        print(f"log-log slope over sizes >= {result['large_size']}: {result['fit_large']['loglog_slope']:.2f}")
    print(f"wrote {args.out} and {result['plot']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The bilevel results as images for the README, and the quadratic study's claims as a markdown table (issue 14).

    python bench/plot_bilevel.py             # reads bench/results/*.json, writes docs/figures/*.png
    python bench/plot_bilevel.py --claims    # prints the claims of bench/results/bilevel_quadratic.json as markdown

Each figure is drawn from one result file (the dashboard's Lab page draws the same data as plotly charts):

- bilevel_quadratic.json (bench/bilevel_quadratic.py): ``bilevel_figure1_left.png``, the relative error of every
  estimator against the exact meta-gradient over the inner steps (log-log), and ``bilevel_figure1_right.png``,
  ``F - F*`` over the outer iterations, one panel per outer step (GD, SNGDM, clipped), each estimator at its tuned rate;
- bilevel_smoothness.json (bench/bilevel_smoothness.py): ``bilevel_smoothness.png``, the meta-Hessian's spectral norm
  against ``||grad F||`` per trajectory, with the fitted ``L0 + L1 ||grad F||``;
- mnist1d_estimators.json: ``mnist1d_accuracy_time.png``, validation accuracy against training seconds per estimator,
  with the final test accuracies (95% CI) as error bars;
- bilevel_memory.json: ``bilevel_memory.png``, the peak extra memory of one meta-gradient against the channels and
  against the inner steps, per estimator.

A missing result file is skipped with a message (other benchmarks write some of them later); a file that lacks a key
its figure needs stops the script with the file and key named. Re-running overwrites the images.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FIGURES = ROOT / "docs" / "figures"
DPI = 120


# tab20's twenty colours, the ten dark ones first: the left panel has thirteen curves, and tab10 would repeat.
COLOURS = plt.get_cmap("tab20").colors[0::2] + plt.get_cmap("tab20").colors[1::2]


def _axes(figure_size: tuple[float, float], columns: int = 1, **options) -> tuple[plt.Figure, list[plt.Axes]]:
    figure, axes = plt.subplots(1, columns, figsize=figure_size, squeeze=False, **options)
    for axis in axes[0]:
        axis.set_prop_cycle(color=COLOURS)
    return figure, list(axes[0])


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _style(label: str) -> dict:
    """Dashed lines for the first-order FO-B-MAML estimators, so that they stand out from the baselines."""
    return {"linestyle": "--" if label.startswith("fo_b_maml") else "-", "marker": "o", "markersize": 3}


# ---------------------------------------------------------------------------------------------------- the figures


def figure1_left(data: dict, out: Path) -> list[Path]:
    left = data["figure1_left"]
    steps = left["inner_steps"]
    figure, (axes,) = _axes((7.5, 5))
    for label, errors in left["relative_error"].items():
        axes.plot(steps, _finite(errors), label=label, **_style(label))
    for label, errors in left["reference_curves"].items():
        axes.plot(steps, _finite(errors), label=label, color="black", linestyle=":", linewidth=1.5)
    settings = data["settings"]
    axes.set(
        xscale="log",
        yscale="log",
        xlabel="inner steps T",
        ylabel="relative error of the meta-gradient",
        title=f"Quadratic family: kappa={settings['family']['kappa']:g}, lambda={settings['lambda']:g}, "
        f"n={settings['family']['n']}",
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    return [_save(figure, out / "bilevel_figure1_left.png")]


def figure1_right(data: dict, out: Path) -> list[Path]:
    right = data["figure1_right"]
    f_star = right["F_star"]
    panels = right["outer"]
    figure, axes = _axes((5.5 * len(panels), 4.5), len(panels), sharey=True)
    for axis, (kind, panel) in zip(axes, panels.items()):
        for label, run in panel["runs"].items():
            gap = np.asarray(_finite(run["exact_loss"]), dtype=float) - f_star
            # F - F* at rounding level (or a diverged run) has no place on a log axis.
            gap = np.where(gap > 0, gap, np.nan)
            axis.plot(
                np.arange(gap.size), gap, label=f"{label} (rate {run['rate']:.3g})", **_style(label) | {"marker": None}
            )
        axis.set(yscale="log", xlabel="outer iteration", title=f"{kind}: {panel['label']}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=6)
    axes[0].set_ylabel(f"F - F*  (T = {right['inner_steps']} inner steps)")
    return [_save(figure, out / "bilevel_figure1_right.png")]


def smoothness(data: dict, out: Path) -> list[Path]:
    points = data["points"]
    fit = data["fit"]
    figure, (axes,) = _axes((7, 5))
    for trajectory in dict.fromkeys(p["trajectory"] for p in points):
        mine = [p for p in points if p["trajectory"] == trajectory]
        axes.scatter([p["meta_grad_norm"] for p in mine], [p["smoothness"] for p in mine], s=14, label=trajectory)
    norms = np.array([p["meta_grad_norm"] for p in points], dtype=float)
    line = np.geomspace(norms.min(), norms.max(), 200)
    axes.plot(
        line,
        fit["L0"] + fit["L1"] * line,
        color="black",
        linewidth=1.2,
        label=f"fit: {fit['L0']:.3g} + {fit['L1']:.3g} ||grad F||",
    )
    axes.set(
        xscale="log",
        yscale="log",
        xlabel="||grad F(x)||  (meta-gradient norm)",
        ylabel="||hessian F(x)||  (local smoothness)",
        title="MAML meta-objective along meta-training",
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    return [_save(figure, out / "bilevel_smoothness.png")]


def mnist1d(data: dict, out: Path) -> list[Path]:
    figure, (axes,) = _axes((7.5, 5))
    colours: dict[str, str] = {}
    for estimator in dict.fromkeys(c["estimator"] for c in data["curves"]):
        mine = sorted((c for c in data["curves"] if c["estimator"] == estimator), key=lambda c: c["seconds"])
        (line,) = axes.plot(
            [c["seconds"] for c in mine], [c["val_accuracy"] for c in mine], label=estimator, **_style(estimator)
        )
        colours[estimator] = line.get_color()
    for row in data["rows"]:
        axes.errorbar(
            row["train_seconds"],
            row["accuracy"],
            yerr=row["ci95"],
            fmt="s",
            capsize=3,
            color=colours.get(row["estimator"]),
            markersize=5,
        )
    axes.set(
        xlabel="meta-training seconds",
        ylabel="accuracy",
        title="MNIST-1D few-shot: validation accuracy (lines), test accuracy with 95% CI (squares)",
    )
    axes.title.set_fontsize(9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    return [_save(figure, out / "mnist1d_accuracy_time.png")]


def _sweep(rows: list[dict], varied: str, held: str) -> tuple[int, list[dict]]:
    """The rows of the sweep over ``varied``: those at the value of ``held`` with the most distinct ``varied`` values."""
    distinct = Counter()
    for value in {r[held] for r in rows}:
        distinct[value] = len({r[varied] for r in rows if r[held] == value})
    fixed = max(distinct, key=lambda v: (distinct[v], v))
    return fixed, sorted((r for r in rows if r[held] == fixed), key=lambda r: r[varied])


def memory(data: dict, out: Path) -> list[Path]:
    rows = data["rows"]
    figure, axes = _axes((11, 4.5), 2)
    for axis, (varied, held, xlabel) in zip(
        axes, (("channels", "inner_steps", "channels"), ("inner_steps", "channels", "inner steps"))
    ):
        fixed, sweep = _sweep(rows, varied, held)
        for estimator in dict.fromkeys(r["estimator"] for r in sweep):
            mine = [r for r in sweep if r["estimator"] == estimator]
            axis.plot(
                [r[varied] for r in mine], [r["peak_extra_mb"] for r in mine], label=estimator, **_style(estimator)
            )
        axis.set(
            xlabel=xlabel,
            ylabel="peak extra memory of one meta-gradient (MB)",
            title=f"{held.replace('_', ' ')} = {fixed}",
        )
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    return [_save(figure, out / "bilevel_memory.png")]


def _finite(values: list) -> list[float]:
    """JSON's null (a non-finite value the bench wrote as None) as NaN, which matplotlib leaves out."""
    return [np.nan if v is None else v for v in values]


FIGURES_BY_FILE: dict[str, Callable[[dict, Path], list[Path]]] = {
    "bilevel_quadratic.json": lambda data, out: figure1_left(data, out) + figure1_right(data, out),
    "bilevel_smoothness.json": smoothness,
    "mnist1d_estimators.json": mnist1d,
    "bilevel_memory.json": memory,
}


def draw(results: Path, out: Path) -> list[Path]:
    """Every figure whose result file exists under ``results``, written under ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in FIGURES_BY_FILE.items():
        path = results / name
        if not path.exists():
            print(f"skipped {name}: {path} does not exist (run the benchmark that writes it, then this again)")
            continue
        data = json.loads(path.read_text())
        try:
            paths = plot(data, out)
        except KeyError as missing:
            raise SystemExit(f"{path}: the key {missing} its figure needs is missing") from None
        for p in paths:
            print(f"wrote {p}")
        written += paths
    return written


# ------------------------------------------------------------------------------------------------ the claims table


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def claims_table(data: dict) -> str:
    """The quadratic study's ``claims`` as a markdown table: claim, verdict, criterion, the measured numbers, and the
    inner steps where the meta-gradient errors agree with the claim (comparison claims only)."""
    lines = [
        "| Claim (Chayti & Jaggi) | Verdict | Criterion | Measured | Inner steps where the errors agree |",
        "|---|---|---|---|---|",
    ]
    for claim in data["claims"]:
        summary = "\n".join(part.strip() for part in claim["summary"].split("\n"))
        agree = claim.get("inner_steps_where_the_errors_agree")  # only the comparison claims have it
        steps = "n/a" if agree is None else (", ".join(map(str, agree)) or "none")
        verdict = f"**{claim['verdict']}**"
        cells = (claim["claim"], verdict, claim["criterion"], summary, steps)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the result json files are")
    parser.add_argument("--out", type=Path, default=FIGURES, help="where the PNG files go")
    parser.add_argument("--claims", action="store_true", help="print the claims table (markdown) and draw nothing")
    args = parser.parse_args(argv)
    if args.claims:
        path = args.results / "bilevel_quadratic.json"
        if not path.exists():
            raise SystemExit(f"{path} does not exist: run bench/bilevel_quadratic.py first")
        try:
            sys.stdout.write(claims_table(json.loads(path.read_text())))
        except KeyError as missing:
            raise SystemExit(f"{path}: the key {missing} the claims table needs is missing") from None
        return
    draw(args.results, args.out)


if __name__ == "__main__":
    main()

"""A grid's report: top-1 error and Many/Medium/Few error per method and setting, mean and
standard deviation over seeds, as CSV, Markdown tables and plots.

Errors are 100 - accuracy in percent. The standard deviation is the sample one (ddof 1) over
the seeds that finished; a diverged member is counted apart and left out of the means.
"""

from __future__ import annotations

import csv
import io
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lt_jax import io_utils  # noqa: E402

CSV_FILE, MARKDOWN_FILE = "summary.csv", "summary.md"
ERROR_PLOT_FILE, PER_CLASS_PLOT_FILE = "error_by_method.png", "per_class_accuracy.png"
BLOCKS = {"final": "last epoch", "best": "selected epoch"}
COLUMNS = (("top-1", "top1_acc"), ("many", "many_acc"), ("medium", "medium_acc"),
           ("few", "few_acc"))


def _split_name(name: str) -> tuple[str, str, int]:
  setting, method, seed = name.split("/")
  return setting, method, int(seed.removeprefix("seed_"))


def _error(block: dict, key: str) -> float:
  acc = block.get(key)
  return math.nan if acc is None else 100.0 - float(acc)


def _mean_std(values: list[float]) -> tuple[float, float]:
  values = [v for v in values if not math.isnan(v)]
  if not values:
    return math.nan, math.nan
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def rows(results: dict[str, dict], block: str) -> list[dict]:
  """One row per (setting, method), in the order the members come: seeds, diverged count,
  and mean / std of each error column over the finished seeds."""
  groups: dict[tuple[str, str], list[dict]] = {}
  for name, res in results.items():
    setting, method, _ = _split_name(name)
    groups.setdefault((setting, method), []).append(res)
  out = []
  for (setting, method), group in groups.items():
    ok = [r for r in group if r.get("status", "ok") == "ok"]
    row = {"setting": setting, "method": method, "block": block, "seeds": len(ok),
           "diverged": len(group) - len(ok)}
    for title, key in COLUMNS:
      mean, std = _mean_std([_error(r[block], key) for r in ok])
      row[f"{title}_err_mean"], row[f"{title}_err_std"] = mean, std
    out.append(row)
  return out


def json_rows(table: list[dict]) -> list[dict]:
  """The rows with an empty column's NaN as None: results.json stays strict JSON."""
  return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
          for row in table]


def _cell(mean: float, std: float, best: bool) -> str:
  if math.isnan(mean):
    return "-"
  text = f"{mean:.2f} ± {std:.2f}"
  return f"**{text}**" if best else text


def markdown(table: list[dict]) -> str:
  """The rows as a Markdown table; the lowest mean of each column in bold."""
  lines = ["| setting | method | " + " | ".join(f"{t} err" for t, _ in COLUMNS)
           + " | seeds | diverged |", "|---|---|" + "---|" * (len(COLUMNS) + 2)]
  best = {}
  for title, _ in COLUMNS:
    means = [r[f"{title}_err_mean"] for r in table if not math.isnan(r[f"{title}_err_mean"])]
    best[title] = min(means) if means else None
  for r in table:
    cells = [_cell(r[f"{t}_err_mean"], r[f"{t}_err_std"], r[f"{t}_err_mean"] == best[t])
             for t, _ in COLUMNS]
    lines.append(f"| {r['setting']} | {r['method']} | " + " | ".join(cells)
                 + f" | {r['seeds']} | {r['diverged']} |")
  return "\n".join(lines)


def by_setting(table: list[dict]) -> str:
  """Top-1 error per method (rows) and setting (columns), and each setting's change from
  scratch: does the setting lower the error for every method?"""
  settings = list(dict.fromkeys(r["setting"] for r in table))
  methods = list(dict.fromkeys(r["method"] for r in table))
  cell = {(r["setting"], r["method"]): r for r in table}
  header = "| method | " + " | ".join(settings)
  extra = [s for s in settings if s != "scratch"] if "scratch" in settings else []
  header += "".join(f" | {s} - scratch" for s in extra) + " |"
  lines = [header, "|---|" + "---|" * (len(settings) + len(extra))]
  for m in methods:
    parts = []
    for s in settings:
      r = cell.get((s, m))
      parts.append("-" if r is None else _cell(r["top-1_err_mean"], r["top-1_err_std"], False))
    for s in extra:
      a, b = cell.get(("scratch", m)), cell.get((s, m))
      delta = math.nan if a is None or b is None else b["top-1_err_mean"] - a["top-1_err_mean"]
      parts.append("-" if math.isnan(delta) else f"{delta:+.2f}")
    lines.append(f"| {m} | " + " | ".join(parts) + " |")
  return "\n".join(lines)


def paired(results: dict[str, dict], block: str) -> str:
  """Each setting against scratch, seed by seed, per method: the mean change of top-1 error over
  the seeds finished in both, and how many of them got better. Seeds share the long-tailed
  subset and differ in initialisation and order, so the pairs show whether a setting helps
  beyond the spread of seeds. Empty without a scratch setting."""
  errors: dict[tuple[str, str], dict[int, float]] = {}
  for name, res in results.items():
    setting, method, seed = _split_name(name)
    if res.get("status", "ok") == "ok":
      errors.setdefault((setting, method), {})[seed] = _error(res[block], "top1_acc")
  names = [_split_name(n) for n in results]
  settings = [s for s in dict.fromkeys(s for s, _, _ in names) if s != "scratch"]
  if not settings or len(settings) == len(set(s for s, _, _ in names)):
    return ""
  lines = ["| method | " + " | ".join(f"+ {s} | seeds better" for s in settings) + " |",
           "|---|" + "---|---|" * len(settings)]
  for method in dict.fromkeys(m for _, m, _ in names):
    base, cells = errors.get(("scratch", method), {}), []
    for setting in settings:
      other = errors.get((setting, method), {})
      seeds = sorted(set(base) & set(other))
      if not seeds:
        cells += ["-", "-"]
        continue
      delta = float(np.mean([other[s] - base[s] for s in seeds]))
      better = sum(other[s] < base[s] for s in seeds)
      cells += [f"{delta:+.2f}", f"{better} of {len(seeds)}"]
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write(grid_dir: str, results: dict[str, dict], title: str) -> str:
  """Writes summary.csv, summary.md and the two plots into `grid_dir`; returns the Markdown."""
  tables = {block: rows(results, block) for block in BLOCKS}
  text = io.StringIO()
  fields = list(tables["final"][0])
  writer = csv.DictWriter(text, fieldnames=fields)
  writer.writeheader()
  for block in BLOCKS:
    writer.writerows(tables[block])
  io_utils.atomic_write_text(os.path.join(grid_dir, CSV_FILE), text.getvalue())
  selected = next(iter(results.values())).get("selected_on", "test")
  md = [f"# {title}", "",
        "Top-1 and Many / Medium / Few error (%), mean ± std over seeds; the lowest of each "
        "column in bold.", ""]
  for block, what in BLOCKS.items():
    heading = what if block == "final" else f"{what} (chosen on {selected})"
    md += [f"## {heading}", "", markdown(tables[block]), "", "Top-1 error by setting:", "",
           by_setting(tables[block]), ""]
    pairs = paired(results, block)
    if pairs:
      md += ["Against scratch, seed by seed: the mean change of top-1 error and the seeds "
             "whose error went down.", "", pairs, ""]
  md_text = "\n".join(md)
  io_utils.atomic_write_text(os.path.join(grid_dir, MARKDOWN_FILE), md_text)
  plot_errors(os.path.join(grid_dir, ERROR_PLOT_FILE), tables["final"], title)
  plot_per_class(os.path.join(grid_dir, PER_CLASS_PLOT_FILE), results, title)
  return md_text


def plot_errors(path: str, table: list[dict], title: str) -> None:
  """Top-1 error per method, one bar per setting, with the seeds' standard deviation."""
  settings = list(dict.fromkeys(r["setting"] for r in table))
  methods = list(dict.fromkeys(r["method"] for r in table))
  cell = {(r["setting"], r["method"]): r for r in table}
  width = 0.8 / len(settings)
  fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(methods) * max(1, len(settings) / 2)), 4.2))
  x = np.arange(len(methods))
  for j, s in enumerate(settings):
    means = [cell[(s, m)]["top-1_err_mean"] if (s, m) in cell else np.nan for m in methods]
    stds = [cell[(s, m)]["top-1_err_std"] if (s, m) in cell else np.nan for m in methods]
    ax.bar(x + (j - (len(settings) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
           label=s)
  ax.set_xticks(x, methods, rotation=30, ha="right")
  ax.set_ylabel("top-1 error (%), last epoch")
  ax.set_title(title)
  ax.grid(axis="y", alpha=0.3)
  ax.legend()
  fig.tight_layout()
  io_utils.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
  plt.close(fig)


def plot_per_class(path: str, results: dict[str, dict], title: str) -> None:
  """Per-class test accuracy (mean over seeds, last epoch) against training images per class,
  one line per method, one panel per setting."""
  curves: dict[str, dict[str, list]] = {}
  counts: dict[str, list] = {}
  for name, res in results.items():
    if res.get("status", "ok") != "ok":
      continue
    setting, method, _ = _split_name(name)
    acc = [np.nan if a is None else a for a in res["final"]["per_class_acc"]]
    curves.setdefault(setting, {}).setdefault(method, []).append(acc)
    counts[setting] = res.get("group_counts") or res["class_counts"]
  if not curves:
    return
  fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.2), squeeze=False,
                           sharey=True)
  for ax, (setting, by_method) in zip(axes[0], curves.items()):
    c = np.maximum(np.asarray(counts[setting], np.float64), 1)
    order = np.argsort(-c)
    for method, accs in by_method.items():
      accs = np.asarray(accs, np.float64)
      seen = np.sum(~np.isnan(accs), axis=0)  # A class without test images has no accuracy.
      mean = np.where(seen > 0, np.nansum(accs, axis=0) / np.maximum(seen, 1), np.nan)
      ax.plot(c[order], mean[order], marker="o", markersize=3, linewidth=1, label=method)
    for boundary in (20, 100):
      ax.axvline(boundary, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("training images in the class")
    ax.set_title(setting)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("test accuracy of the class (%)")
  axes[0][-1].legend(fontsize=7, loc="lower right")
  fig.suptitle(title)
  fig.tight_layout()
  io_utils.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
  plt.close(fig)

"""One self-contained HTML page per run (``<workdir>/report.html``; images embedded): the scores,
the recognisers' confusion matrices, the newest sample grid of each generator, a few loss curves
per stage, timings and the config.  Written at the end of every main run; rebuild it for any
workdir with ``jfesgan report --workdir W``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jfesgan.run import metrics
from jfesgan.run import workdir as workdir_lib

# The curves worth a look per stage (the first few present are plotted).
CURVES = {
    "phi": ("phi/loss", "phi/acc"),
    "fesgan": ("g/rec", "g/expr", "g/identity", "dimg/wasserstein", "dimg/gp", "g/adv"),
    "real": ("real/loss", "real/acc"),
    "joint": ("r/ce_real", "r/ce_syn", "r/intra", "r/acc_real", "g/rec"),
}


def _png_data(image: np.ndarray | Image.Image) -> str:
  img = image if isinstance(image, Image.Image) else Image.fromarray(image)
  buf = io.BytesIO()
  img.save(buf, format="PNG")
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def line_plot(xs: list[int], ys: list[float], title: str, size=(300, 150)) -> Image.Image:
  """A small line plot (no plotting library needed), with the y range and the last value."""
  w, h = size
  img = Image.new("RGB", size, "white")
  d = ImageDraw.Draw(img)
  font = ImageFont.load_default()
  ys_f = np.asarray(ys, np.float64)
  finite = np.isfinite(ys_f)
  left, top, bottom = 6, 16, h - 14
  d.text((4, 2), f"{title}  (last {ys_f[-1]:.4g})" if len(ys_f) else title, fill="black", font=font)
  if finite.sum() >= 1:
    lo, hi = float(ys_f[finite].min()), float(ys_f[finite].max())
    span = hi - lo or 1.0
    x0, x1 = min(xs), max(xs)
    xspan = (x1 - x0) or 1
    pts = [(left + (x - x0) / xspan * (w - 2 * left), bottom - (y - lo) / span * (bottom - top))
           for x, y, ok in zip(xs, ys_f, finite) if ok]
    if len(pts) > 1:
      d.line(pts, fill=(30, 90, 200), width=2)
    d.text((4, h - 12), f"{lo:.3g} .. {hi:.3g}   steps {x0}..{x1}", fill="gray", font=font)
  d.rectangle([0, 0, w - 1, h - 1], outline=(200, 200, 200))
  return img


def _newest_samples(workdir: str) -> dict[str, str]:
  """Stage -> path of its newest sample grid."""
  folder = os.path.join(workdir, "samples")
  best: dict[str, tuple[int, str]] = {}
  if os.path.isdir(folder):
    for name in os.listdir(folder):
      m = re.fullmatch(r"(\w+?)_(\d+)\.png", name)
      if m and int(m.group(2)) >= best.get(m.group(1), (-1, ""))[0]:
        best[m.group(1)] = (int(m.group(2)), os.path.join(folder, name))
  return {k: v[1] for k, v in best.items()}


def build(workdir: str) -> str:
  """The report of the run in ``workdir`` as an HTML string."""
  summary = workdir_lib.read_summary(workdir)
  config = {}
  if os.path.isfile(os.path.join(workdir, "config.json")):
    config = workdir_lib.read_json(os.path.join(workdir, "config.json"))
  esc = html.escape
  parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>jfesgan run "
           f"{esc(os.path.basename(workdir))}</title><style>body{{font-family:sans-serif;"
           "margin:24px;max-width:1200px}} table{border-collapse:collapse} td,th{border:1px solid "
           "#ccc;padding:3px 8px;text-align:left} .row img{margin:4px} h2{margin-top:28px} "
           "img.big{image-rendering:pixelated;zoom:2}"
           "</style></head><body>", f"<h1>jfesgan run: {esc(workdir)}</h1>"]
  stages_run = list(config.get("stages", []))
  parts.append(f"<p>stages {esc(', '.join(stages_run))}; "
               f"data {esc(str(config.get('data', {}).get('name', '')))}"
               f" ({esc(str(config.get('data', {}).get('image_size', '')))} px), held out: "
               f"{esc(str(config.get('data', {}).get('heldout', 'test')))}</p>")
  # Scores.
  acc = {k: v for k, v in summary.items() if k.startswith("eval/") and isinstance(v, float)}
  synth = {k: v for k, v in summary.items() if k.startswith(("synth/", "judge/"))
           and isinstance(v, float) and k.count("/") <= 2}
  for title, table in (("Recognition (held-out faces)", acc), ("Synthesis", synth)):
    if table:
      parts.append(f"<h2>{title}</h2><table><tr><th>score</th><th>value</th></tr>" + "".join(
          f"<tr><td>{esc(k)}</td><td>{v:.4f}</td></tr>" for k, v in sorted(table.items()))
                   + "</table>")
  if synth:
    parts.append("<p><code>synth/expr_acc_*</code> are in-domain (a recogniser trained on the same "
                 "faces); <code>judge/*</code> come from a recogniser of another database.</p>")
  # Confusion matrices and sample grids.
  images = [(f"confusion: {k}", p) for k, p in summary.get("paths", {}).items()
            if k.startswith("confusion_") and os.path.isfile(p)]
  images += [(f"samples: {k} (newest)", p) for k, p in sorted(_newest_samples(workdir).items())]
  for title, path in images:
    parts.append(f"<h2>{esc(title)}</h2><img class='big' "
                 f"src='{_png_data(Image.open(path).convert('RGB'))}'>")
  # Curves.
  records = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  for stage in stages_run:
    keys = [k for k in CURVES.get(stage, ()) if any(k in r for r in records
                                                    if r.get("stage") == stage)][:4]
    if not keys:
      continue
    plots = []
    for k in keys:
      pts = sorted((r["step"], r[k]) for r in records if r.get("stage") == stage and k in r)
      plot = line_plot([p[0] for p in pts], [p[1] for p in pts], k)
      plots.append(f"<img alt='{esc(k)}' title='{esc(k)}' src='{_png_data(plot)}'>")
    parts.append(f"<h2>Training curves: {esc(stage)}</h2><div class='row'>{''.join(plots)}</div>")
  # Timings and config.
  times = summary.get("wall_seconds", {})
  if times:
    parts.append("<h2>Wall time (s)</h2><table>" + "".join(
        f"<tr><td>{esc(k)}</td><td>{v:.1f}</td></tr>" for k, v in times.items()) + "</table>")
  parts.append("<h2>Config</h2><details><summary>config.json</summary><pre>"
               + esc(json.dumps(config, indent=1, sort_keys=True)) + "</pre></details>")
  parts.append("</body></html>")
  return "\n".join(parts)


def write(workdir: str) -> str:
  """Writes ``<workdir>/report.html``; returns its path."""
  path = os.path.join(workdir, "report.html")
  with open(path, "w") as f:
    f.write(build(workdir))
  return path

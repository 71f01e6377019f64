"""One self-contained HTML page per run (``<workdir>/report.html``; images embedded): the scores in
words (each with a plain name, what it means, which way is better, chance beside accuracies, and
who reads it: held-out faces, the renderer's truth, in-domain networks, no network, or an
independent judge), the recognisers' confusion matrices with full class names, the newest sample
grid of each generator, every stage's loss curves, timings and the config.  Written at the end of
every main run; rebuild it for any workdir with ``jfesgan report --workdir W``.
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


# Every score the report shows: key pattern -> (plain name, what it means, which way is better
# ("higher" / "lower" / "" for a reference value), who reads it).  "<stage>" stands for a stage.
KINDS = {
    "held-out": "real faces of people no network trained on",
    "renderer": "against the renderer's true image (embedded faces only)",
    "in-domain": "IN-DOMAIN: networks trained on the same faces; they can read cues a person would "
                 "not see",
    "no network": "no network: pixels only",
    "independent": "INDEPENDENT judge: a recogniser of another database, in no loss",
}
GLOSSARY = {
    "eval/<stage>/acc": ("recognition accuracy ({stage} R)", "share of held-out faces whose "
                         "expression the recogniser names right", "higher", "held-out"),
    "eval/<stage>/mean_class_acc": ("mean per-class accuracy ({stage} R)", "the accuracy of each "
                                    "class, averaged: rare classes count as much as common ones",
                                    "higher", "held-out"),
    "synth/psnr": ("translation PSNR (dB)", "a held-out face re-drawn with another expression, "
                   "against the true rendering of that person with it", "higher", "renderer"),
    "synth/psnr_copy": ("PSNR of copying the input (dB)", "the do-nothing baseline: the unchanged "
                        "input against the same truth; a translation should beat it", "",
                        "renderer"),
    "synth/l1": ("translation L1", "mean absolute error of translations against the truth "
                 "(images in [0, 1])", "lower", "renderer"),
    "synth/l1_copy": ("L1 of copying the input", "the do-nothing baseline of the L1", "",
                      "renderer"),
    "synth/psnr_edit": ("PSNR of the ideal edit (dB)", "the input plus the truth's own change of "
                        "expression: the best a generator that keeps the input's pixels (and "
                        "their noise) can do", "", "renderer"),
    "synth/l1_edit": ("L1 of the ideal edit", "the ideal edit's L1 against the truth", "",
                      "renderer"),
    "synth/psnr_denoised": ("PSNR of the input denoised (dB)", "the person's clean rendering "
                            "with the input's own expression: perfect denoising, no change of "
                            "expression; PSNR rewards it, so a translation must beat it to show "
                            "an expression change", "", "renderer"),
    "synth/l1_denoised": ("L1 of the input denoised", "its L1 against the truth", "", "renderer"),
    "synth/change_cos": ("change agreement", "cosine between how the translation changes the face "
                         "and how the truth does (1: the same change; 0: copying)", "higher",
                         "renderer"),
    "synth/change_made": ("expression change made", "how much of the true change of expression "
                          "(between two clean renderings of the person) the translation makes: 1 "
                          "all of it, 0 none; copying and denoising score 0", "higher",
                          "renderer"),
    "synth/expr_acc_t": ("expression read in translations", "share of translations the real-only "
                         "recogniser reads as the requested expression", "higher", "in-domain"),
    "synth/expr_acc_p": ("expression read in new people", "share of faces drawn from the prior "
                         "read as the requested expression", "higher", "in-domain"),
    "synth/rec_l1": ("reconstruction L1", "mean absolute error of a held-out face re-drawn with "
                     "its own expression (images in [-1, 1])", "lower", "held-out"),
    "synth/id_sim": ("identity kept (Phi similarity)", "cosine similarity under the identity "
                     "network Phi between a face and its translations", "higher", "in-domain"),
    "synth/id_sim_rec": ("identity kept in reconstructions", "Phi similarity of a face and its "
                         "reconstruction", "higher", "in-domain"),
    "synth/id_sim_other": ("similarity of different people", "Phi similarity of real faces of "
                           "different people: the floor for the two above", "", "in-domain"),
    "synth/id_sim_prior": ("similarity of new people", "Phi similarity between new people drawn "
                           "from different codes (near the floor: as varied as real people)",
                           "lower", "in-domain"),
    "synth/id_nearest": ("right person, by Phi", "how often the real held-out face nearest to a "
                         "translation (under Phi) is of the same person", "higher", "in-domain"),
    "synth/id_nearest_pixel": ("right person, by pixels", "the same question in standardised "
                               "pixels, with no network", "higher", "no network"),
    "synth/id_nearest_edit": ("right person by Phi, ideal edit", "the same question asked of "
                              "the ideal edits (the input plus the truth's change of expression):"
                              " the ceiling of a generator that does its task", "", "in-domain"),
    "synth/id_nearest_pixel_edit": ("right person by pixels, ideal edit", "the pixels' question "
                                    "asked of the ideal edits: the ceiling", "", "no network"),
    "synth/id_nearest_truth": ("right person by Phi, clean truth", "the same question asked "
                               "of the true renderings with the target expression: the ceiling "
                               "of a generator that re-draws the person cleanly", "",
                               "in-domain"),
    "synth/id_nearest_pixel_truth": ("right person by pixels, clean truth", "the pixels' "
                                     "question asked of the clean truths", "", "no network"),
    "synth/id_nearest_chance": ("right person by chance", "the rate of a random pick among the "
                                "held-out people", "", "no network"),
    "synth/lattice": ("lattice in translations (dB)", "how far a regular grid of the decoder's "
                      "period stands out of the translations' spectrum; near the real faces' "
                      "level below: none", "lower", "no network"),
    "synth/lattice_prior": ("lattice in new people (dB)", "the same of faces drawn from the "
                            "prior", "lower", "no network"),
    "synth/lattice_real": ("lattice level of real faces (dB)", "the same score of the real "
                           "held-out faces: the level of a face with no grid", "", "no network"),
    "judge/real_acc": ("judge's accuracy on the real faces", "the independent judge on the "
                       "held-out real faces: the ceiling for the two below", "", "independent"),
    "judge/<stage>/acc_t": ("judge reads translations ({stage} generator)", "share of "
                            "translations the judge reads as the requested expression", "higher",
                            "independent"),
    "judge/<stage>/acc_p": ("judge reads new people ({stage} generator)", "share of new people "
                            "the judge reads as the requested expression", "higher",
                            "independent"),
}


def describe(key: str) -> tuple[str, str, str, str]:
  """(plain name, meaning, "higher" / "lower" / "", kind) of a score key; the key itself (and
  empty words) for a key the glossary does not know."""
  parts = key.split("/")
  family = ""
  if parts[0].startswith("judge_"):  # another architecture family's judges: judge_<family>/...
    family, parts = parts[0][len("judge_"):], ["judge", *parts[1:]]
  for pattern, (name, meaning, better, kind) in GLOSSARY.items():
    p = pattern.split("/")
    if len(p) == len(parts) and all(a == b or a == "<stage>" for a, b in zip(p, parts)):
      stage = parts[p.index("<stage>")] if "<stage>" in p else ""
      if family:
        return (name.format(stage=stage) + f" ({family} family)",
                meaning + f", a judge of the {family} architecture family", better, kind)
      return name.format(stage=stage), meaning, better, kind
  return key, "", "", ""


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
           "tr.in-domain td:last-child{color:#8a4b00} tr.independent td:last-child{color:#1d6b2a} "
           "img.big{image-rendering:pixelated;zoom:2}"
           "</style></head><body>", f"<h1>jfesgan run: {esc(workdir)}</h1>"]
  stages_run = list(config.get("stages", []))
  parts.append(f"<p>stages {esc(', '.join(stages_run))}; "
               f"data {esc(str(config.get('data', {}).get('name', '')))}"
               f" ({esc(str(config.get('data', {}).get('image_size', '')))} px), held out: "
               f"{esc(str(config.get('data', {}).get('heldout', 'test')))}</p>")
  # Scores, in words.
  class_names = list(summary.get("class_names", []))
  chance = f"{100 / len(class_names):.1f} %" if class_names else ""
  acc = {k: v for k, v in summary.items() if k.startswith("eval/") and isinstance(v, float)}
  synth = {k: v for k, v in summary.items() if k.startswith(("synth/", "judge/", "judge_"))
           and isinstance(v, float) and k.count("/") <= 2}
  for title, table in (("Recognition (held-out faces)", acc), ("Synthesis", synth)):
    if not table:
      continue
    rows = []
    for k, v in sorted(table.items(), key=lambda kv: (describe(kv[0])[3], kv[0])):
      name, meaning, better, kind = describe(k)
      way = {"higher": "higher is better", "lower": "lower is better"}.get(better, "reference")
      ref = chance if k.endswith(("acc", "acc_t", "acc_p", "real_acc")) else ""
      if k in ("synth/id_nearest", "synth/id_nearest_pixel") and "synth/id_nearest_chance" in summary:
        ref = f"{100 * summary['synth/id_nearest_chance']:.1f} %"
      rows.append(f"<tr class='{esc(kind.replace(' ', '-'))}'><td title='{esc(meaning)}'>"
                  f"{esc(name)}<br><small><code>{esc(k)}</code></small></td><td>{v:.4f}</td>"
                  f"<td>{esc(way)}</td><td>{esc(ref)}</td><td>{esc(meaning)}</td>"
                  f"<td title='{esc(KINDS.get(kind, ''))}'>{esc(kind)}</td></tr>")
    parts.append(f"<h2>{title}</h2><table><tr><th>score</th><th>value</th><th>direction</th>"
                 "<th>chance</th><th>what it means</th><th>read by</th></tr>"
                 + "".join(rows) + "</table>")
  if synth:
    parts.append("<p>Read by: " + "; ".join(f"<b>{esc(k)}</b>: {esc(v)}" for k, v in KINDS.items())
                 + ". In-domain scores come from networks trained on the same faces as the "
                 "generator (and Phi is in its loss): they can be met by cues no person sees. "
                 "Independent (<code>judge/*</code>) and no-network scores cannot.</p>")
  # Confusion matrices, with the classes' full names, and sample grids.
  for stage, cm in summary.get("confusion", {}).items():
    cm = np.asarray(cm)
    names = class_names if len(class_names) == len(cm) else [str(i) for i in range(len(cm))]
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    body = "".join(
        f"<tr><th>{esc(names[i])}</th>" + "".join(
            f"<td style='background:rgba(59,125,221,{c / max(1, row.sum()):.2f})'>{c}</td>"
            for c in row) + f"<td>{100 * row[i] / max(1, row.sum()):.0f} %</td></tr>"
        for i, row in enumerate(cm))
    parts.append(f"<h2>Confusion: the {esc(stage)} recogniser</h2><p>rows: the true expression; "
                 "columns: the one read; last column: the row's accuracy.</p><table><tr><th>"
                 f"</th>{head}<th>right</th></tr>{body}</table>")
  for title, path in [(f"samples: {k} (newest)", p)
                      for k, p in sorted(_newest_samples(workdir).items())]:
    parts.append(f"<h2>{esc(title)}</h2><img class='big' "
                 f"src='{_png_data(Image.open(path).convert('RGB'))}'>")
  # Curves.
  records = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  for stage in stages_run:
    logged = [k for r in records if r.get("stage") == stage for k in r]
    losses = sorted({k for k in logged if k.endswith(("loss", "/ce_real", "/ce_syn", "/intra"))})
    keys = list(dict.fromkeys(losses + [k for k in CURVES.get(stage, ()) if k in logged]))[:8]
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

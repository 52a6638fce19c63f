"""One self-contained HTML file for any results object: tables, inline SVG charts and example
images as base64, so a report can be mailed or opened offline (no script, no network).

``write_html_report(results, out_path, title=..., images=...)`` takes what ``eval`` writes
(``results.json``: ``{"results": {model: {benchmark: {metric: value}}}, "errors": ...}``), the
demo's ``report.json`` (its per-model benchmark details), or a bare
``{model: {benchmark: {metric: value}}}`` mapping, so ``eval``, ``demo`` and later ``compare``
call the same writer. Each benchmark's headline metric is chosen as in ``results.md``
(``report.headline``). ``render_html(..., fragment=True)`` gives the body alone (the explore
page's results tab shows it).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..utils import NegationClipError, atomic_write_text
from .report import headline

# One colour per model, in order (colour-blind-safe Okabe-Ito palette).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
THUMB_PX = 192

_CSS = """
.nc-report{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;
  max-width:1200px;margin:0 auto;padding:8px 16px;line-height:1.4}
.nc-report h1{font-size:1.5em;margin:.4em 0}.nc-report h2{font-size:1.2em;margin:1.2em 0 .4em}
.nc-report h3{font-size:1em;margin:.8em 0 .3em}
.nc-report .nc-meta{color:#555;font-size:.85em}
.nc-report table{border-collapse:collapse;margin:.3em 0 1em;font-size:.9em}
.nc-report th,.nc-report td{border:1px solid #ccc;padding:3px 8px;text-align:right}
.nc-report th:first-child,.nc-report td:first-child{text-align:left}
.nc-report thead th{background:#f2f2f2}.nc-report td.nc-best{font-weight:700}
.nc-report td.nc-err{color:#b00020;text-align:left}
.nc-report .nc-swatch{display:inline-block;width:.8em;height:.8em;margin-right:.4em;border-radius:2px}
.nc-report .nc-charts{display:flex;flex-wrap:wrap;gap:12px}
.nc-report .nc-charts figure{margin:0;border:1px solid #e3e3e3;padding:4px}
.nc-report .nc-examples{display:flex;flex-wrap:wrap;gap:14px}
.nc-report .nc-example{border:1px solid #e3e3e3;padding:6px;max-width:560px}
.nc-report .nc-example .nc-q{font-style:italic;margin-bottom:4px}
.nc-report .nc-example figure{display:inline-block;margin:2px;vertical-align:top;text-align:center;
  font-size:.8em;max-width:200px}
.nc-report .nc-example img{display:block;width:160px;height:auto;image-rendering:pixelated;border:3px solid #ddd}
.nc-report .nc-example img.nc-right{border-color:#1a9850}.nc-report .nc-example img.nc-wrong{border-color:#d73027}
.nc-report .nc-errors li{color:#b00020}
.nc-report details{margin:.5em 0}.nc-report pre{font-size:.8em;background:#f7f7f7;padding:6px;overflow:auto}
"""


@dataclass
class Normalised:
    """A results object reduced to what the report shows."""

    results: dict[str, dict[str, dict]]               # model -> benchmark -> metrics
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # created, software, models, config, kind

    @property
    def models(self) -> list[str]:
        out = list(self.results)
        out += [m for m in self.errors if m not in out]
        return out

    @property
    def benchmarks(self) -> list[str]:
        seen: dict[str, None] = {}
        for per in list(self.results.values()) + list(self.errors.values()):
            for b in per:
                seen.setdefault(b, None)
        return list(seen)


def normalise(obj: Any, source: str = "results") -> Normalised:
    """Read any of the accepted shapes (see the module docstring); anything else is a
    NegationClipError naming ``source``."""
    if not isinstance(obj, dict):
        raise NegationClipError(f"{source}: expected a JSON object, got {type(obj).__name__}")
    if isinstance(obj.get("results"), dict):  # eval's results.json (and compare's, same layout)
        meta = {k: obj.get(k) for k in ("created", "software", "models", "config", "format")
                if obj.get(k) is not None}
        res, errs = obj["results"], obj.get("errors") or {}
    elif isinstance(obj.get("before"), dict) and isinstance(obj.get("after"), dict):  # demo report
        det = obj.get("details") or {}
        base = det.get("before") or {"headline": obj["before"]}
        tuned = det.get("after") or {"headline": obj["after"]}
        res, errs = {"base": base, "fine-tuned": tuned}, {}
        meta = {"kind": "demo", "wall_seconds": obj.get("wall_seconds"), "config": obj.get("config")}
        if not det:  # the flat six metrics: one pseudo-benchmark per metric
            res = {m: {k: {"accuracy": v} for k, v in d["headline"].items()} for m, d in res.items()}
    else:
        res, errs, meta = obj, {}, {}
    bad = [m for m, per in res.items() if not isinstance(per, dict)
           or any(not isinstance(r, dict) for r in per.values())]
    if bad:
        raise NegationClipError(f"{source}: not a results object: expected "
                                f"{{model: {{benchmark: {{metric: value}}}}}}, but model {bad[0]!r} is not")
    errs = {m: {b: str(e) for b, e in per.items()} for m, per in errs.items() if isinstance(per, dict)}
    return Normalised(res, errs, meta)


# --- formatting -----------------------------------------------------------------------------------

def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _metric_keys(norm: Normalised, bench: str) -> list[str]:
    """Numeric scalar metrics of a benchmark (union over models), headline first."""
    keys: dict[str, None] = {}
    head = None
    for m in norm.models:
        r = norm.results.get(m, {}).get(bench)
        if r is None:
            continue
        head = head or headline(r)[0]
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.setdefault(k, None)
    out = list(keys)
    if head in keys:
        out.remove(head)
        out.insert(0, head)
    return out


def _fmt(v: Any, pct: bool) -> str:
    """Fractions as percentages (as in results.md), counts as integers, the rest as numbers."""
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return "—"
    if pct:
        return f"{100 * v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.4g}"


def _is_fraction_key(norm: Normalised, bench: str, key: str) -> bool:
    vals = [norm.results.get(m, {}).get(bench, {}).get(key) for m in norm.models]
    vals = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return bool(vals) and all(isinstance(v, float) and 0 <= v <= 1 for v in vals) \
        and "per_second" not in key and "seconds" not in key


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


# --- sections --------------------------------------------------------------------------------------

def _summary_table(norm: Normalised) -> str:
    models, benches = norm.models, norm.benchmarks
    heads = []
    for b in benches:
        key = next((headline(norm.results[m][b])[0] for m in models if b in norm.results.get(m, {})),
                   "accuracy")
        heads.append(f"<th>{_e(b)}<br><small>{_e(key)}, %</small></th>")
    best = {}
    for b in benches:
        vals = [headline(norm.results[m][b])[1] for m in models if b in norm.results.get(m, {})]
        vals = [v for v in vals if v is not None]
        best[b] = max(vals) if len(vals) > 1 else None
    rows = []
    for i, m in enumerate(models):
        cells = []
        for b in benches:
            r = norm.results.get(m, {}).get(b)
            if r is not None:
                v = headline(r)[1]
                cls = ' class="nc-best"' if v is not None and v == best[b] else ""
                cells.append(f'<td{cls} data-benchmark="{_e(b)}">{_fmt(v, v is not None and 0 <= v <= 1)}</td>')
            elif b in norm.errors.get(m, {}):
                cells.append(f'<td class="nc-err" title="{_e(norm.errors[m][b])}">error</td>')
            else:
                cells.append("<td>—</td>")
        rows.append(f'<tr class="nc-model-row" data-model="{_e(m)}"><td><span class="nc-swatch" '
                    f'style="background:{_colour(i)}"></span>{_e(m)}</td>{"".join(cells)}</tr>')
    return (f'<table class="nc-summary"><thead><tr><th>model</th>{"".join(heads)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def bar_chart_svg(title: str, labels: Sequence[str], values: Sequence[float | None], *,
                  unit: str = "%", scale: float = 100.0, colours: Sequence[str] | None = None,
                  width: int = 360) -> str:
    """A horizontal bar chart as inline SVG (one bar per label; None is drawn as 'n/a')."""
    colours = colours or [_colour(i) for i in range(len(labels))]
    label_w, row_h, top = 120, 22, 26
    plot_w = width - label_w - 54
    height = top + row_h * len(labels) + 18
    finite = [v * scale for v in values if v is not None]
    vmax = 100.0 if unit == "%" and all(0 <= v <= 100 for v in finite) else (max(finite, default=1.0) or 1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
             f'<text x="4" y="16" font-size="13" font-weight="600">{_e(title)}</text>']
    for frac in (0.0, 0.5, 1.0):  # grid: 0, half, full scale
        x = label_w + frac * plot_w
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 16}" '
                     f'stroke="#ddd" stroke-width="1"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 4}" font-size="9" text-anchor="middle" '
                     f'fill="#777">{vmax * frac:g}</text>')
    for i, (lab, v) in enumerate(zip(labels, values)):
        y = top + i * row_h
        short = lab if len(lab) <= 18 else "…" + lab[-17:]
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="11" text-anchor="end">'
                     f'<title>{_e(lab)}</title>{_e(short)}</text>')
        if v is None:
            parts.append(f'<text x="{label_w + 4}" y="{y + 14}" font-size="11" fill="#777">n/a</text>')
            continue
        w = max(0.0, min(1.0, v * scale / vmax)) * plot_w
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                     f'fill="{colours[i % len(colours)]}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" font-size="11">'
                     f'{v * scale:.1f}{_e(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _charts(norm: Normalised) -> str:
    models = norm.models
    figs = []
    for b in norm.benchmarks:
        vals, key = [], "accuracy"
        for m in models:
            r = norm.results.get(m, {}).get(b)
            if r is None:
                vals.append(None)
                continue
            key, v = headline(r)
            vals.append(v)
        if all(v is None for v in vals):
            continue
        frac = all(v is None or 0 <= v <= 1 for v in vals)
        figs.append("<figure>" + bar_chart_svg(f"{b} — {key}", models, vals,
                                               unit="%" if frac else "",
                                               scale=100.0 if frac else 1.0) + "</figure>")
    return f'<div class="nc-charts">{"".join(figs)}</div>' if figs else ""


def _detail_tables(norm: Normalised) -> str:
    out = []
    for b in norm.benchmarks:
        keys = _metric_keys(norm, b)
        frac = {k: _is_fraction_key(norm, b, k) for k in keys}
        head = "".join(f"<th>{_e(k)}{' (%)' if frac[k] else ''}</th>" for k in keys)
        rows = []
        for m in norm.models:
            r = norm.results.get(m, {}).get(b)
            if r is None:
                err = norm.errors.get(m, {}).get(b)
                rows.append(f'<tr data-model="{_e(m)}"><td>{_e(m)}</td><td class="nc-err" '
                            f'colspan="{max(1, len(keys))}">{("error: " + _e(err)) if err else "—"}</td></tr>')
                continue
            cells = "".join(f"<td>{_fmt(r.get(k), frac[k])}</td>" for k in keys)
            rows.append(f'<tr data-model="{_e(m)}"><td>{_e(m)}</td>{cells}</tr>')
        out.append(f'<h3 id="bench-{_e(b)}">{_e(b)}</h3><table class="nc-detail"><thead><tr>'
                   f'<th>model</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return "".join(out)


def _errors(norm: Normalised) -> str:
    items = [f"<li><b>{_e(m)}</b> / {_e(b)}: {_e(msg)}</li>"
             for m, per in norm.errors.items() for b, msg in per.items()]
    return f'<h2>Errors</h2><ul class="nc-errors">{"".join(items)}</ul>' if items else ""


def image_data_uri(image, max_px: int = THUMB_PX) -> str:
    """A PIL image or a path as a ``data:`` URI (PNG for small or flat images, else JPEG).
    An unreadable path is a NegationClipError naming it."""
    from PIL import Image

    from ..models import open_image

    img = image if isinstance(image, Image.Image) else open_image(image)
    img = img.convert("RGB")
    if max(img.size) > max_px:
        img = img.copy()
        img.thumbnail((max_px, max_px), Image.BICUBIC)
    buf = io.BytesIO()
    small = img.size[0] * img.size[1] <= 128 * 128
    if small:
        img.save(buf, format="PNG", optimize=True)
        mime = "png"
    else:
        img.save(buf, format="JPEG", quality=85)
        mime = "jpeg"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _examples(examples: Iterable[dict] | None) -> tuple[str, int]:
    """Example groups (a query and its images) -> HTML, and how many images could not be read."""
    if not examples:
        return "", 0
    blocks, unreadable = [], 0
    for ex in examples:
        figs = []
        for im in ex.get("images", []):
            correct = im.get("correct")
            cls = "" if correct is None else (' class="nc-right"' if correct else ' class="nc-wrong"')
            try:
                src = image_data_uri(im.get("image", im.get("path")))
                body = f'<img{cls} src="{src}" alt="{_e(im.get("label", ""))}">'
            except NegationClipError as e:
                unreadable += 1
                body = f'<div class="nc-err">unreadable: {_e(e)}</div>'
            figs.append(f"<figure>{body}<figcaption>{_e(im.get('label', ''))}</figcaption></figure>")
        note = f"<div class=\"nc-meta\">{_e(ex['note'])}</div>" if ex.get("note") else ""
        blocks.append(f'<div class="nc-example"><div class="nc-q">“{_e(ex.get("query", ""))}”</div>'
                      f'{note}{"".join(figs)}</div>')
    return f'<h2>Examples</h2><div class="nc-examples">{"".join(blocks)}</div>', unreadable


def pair_examples(root: str | os.PathLike, pairs: Sequence, choices: dict[str, list[bool]]) -> list[dict]:
    """Example groups for negation pairs (objects with ``text``, ``image``, ``foil_image``,
    ``negated_object``; paths relative to ``root``) and each model's choice per pair
    (True = it chose ``image``, the right one)."""
    out = []
    for i, p in enumerate(pairs):
        picked = {True: [m for m in choices if choices[m][i]], False: [m for m in choices if not choices[m][i]]}
        out.append({"query": p.text,
                    "note": "held-out phrasing" if getattr(p, "heldout_phrasing", False) else None,
                    "images": [{"path": Path(root) / p.image, "correct": True,
                                "label": f"no {p.negated_object} — chosen by: " + (", ".join(picked[True]) or "-")},
                               {"path": Path(root) / p.foil_image, "correct": False,
                                "label": f"has {p.negated_object} — chosen by: " + (", ".join(picked[False]) or "-")}]})
    return out


def render_html(results: Any, *, title: str = "negationclip report",
                images: Iterable[dict] | None = None, fragment: bool = False,
                source: str = "results") -> str:
    """The report as an HTML string (``fragment=True``: a ``<div>`` with its own style, for
    embedding). ``images``: example groups ``{"query", "note"?, "images": [{"path" | "image",
    "label", "correct": True/False/None}]}``."""
    norm = normalise(results, source)
    meta = norm.meta
    sw = meta.get("software") or {}
    bits = []
    if meta.get("created"):
        bits.append(f"created {_e(meta['created'])}")
    if sw:
        bits.append("software: " + ", ".join(f"{_e(k)} {_e(v)}" for k, v in sw.items()
                                              if k in ("negationclip", "torch", "transformers")))
    if meta.get("wall_seconds"):
        bits.append(f"wall time {float(meta['wall_seconds']):.0f} s")
    ex_html, unreadable = _examples(images)
    body = [f"<h1>{_e(title)}</h1>", f'<div class="nc-meta">{"; ".join(bits)}</div>' if bits else ""]
    if not norm.benchmarks:
        body.append("<p>No results.</p>")
    else:
        body += ["<h2>Summary</h2>", _summary_table(norm), _charts(norm), "<h2>Per benchmark</h2>",
                 _detail_tables(norm)]
    body.append(_errors(norm))
    body.append(ex_html)
    if unreadable:
        body.append(f'<p class="nc-meta">{unreadable} example image(s) could not be read.</p>')
    extra = {k: meta[k] for k in ("models", "config") if meta.get(k)}
    if extra:
        body.append("<details><summary>models and settings</summary><pre>"
                    + _e(json.dumps(extra, indent=1, default=str)) + "</pre></details>")
    div = f'<div class="nc-report"><style>{_CSS}</style>{"".join(body)}</div>'
    if fragment:
        return div
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title></head><body>{div}</body></html>\n")


def write_html_report(results: Any, out_path: str | os.PathLike, *, title: str = "negationclip report",
                      images: Iterable[dict] | None = None) -> Path:
    """Write one self-contained HTML file (atomically) and return its path."""
    out_path = Path(out_path)
    atomic_write_text(out_path, render_html(results, title=title, images=images, source=str(out_path)))
    return out_path


def load_results(path: str | os.PathLike) -> Normalised:
    """Read a results.json / compare.json / demo report.json into the normalised form."""
    from ..utils import load_json

    p = Path(path)
    if not p.is_file():
        raise NegationClipError(f"{p}: no such file")
    return normalise(load_json(p), str(p))

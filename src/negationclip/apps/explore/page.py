"""The explore page: a local Gradio app with a search tab (each model's top-k images side by
side, optionally the same query with its negation removed) and a results tab (any
``results.json`` / ``compare.json`` / demo ``report.json`` rendered by ``html_report``).

Gradio is an optional extra (``pip install negationclip[app]``); only this module imports it.
Every failure the user can cause (empty query, unreadable results file, ...) becomes a message
on the page and a line in the terminal, never a traceback page.
"""

from __future__ import annotations

import html
import os
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ...evaluate.html_report import PALETTE, image_data_uri, render_html
from ...utils import NegationClipError, load_json
from .negation import remove_negation
from .search import Explorer, Hit


_CSS = """
.nc-hits{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.nc-hits .nc-qrow{margin:6px 0 14px}
.nc-hits .nc-qtitle{font-weight:600;margin:4px 0}
.nc-hits .nc-cols{display:grid;gap:12px}
.nc-hits .nc-col{border:1px solid #ddd;border-radius:6px;padding:6px}
.nc-hits .nc-col h4{margin:0 0 6px;font-size:1em}
.nc-hits .nc-grid{display:flex;flex-wrap:wrap;gap:6px}
.nc-hits figure{margin:0;text-align:center;font-size:.75em;width:112px}
.nc-hits figure img{width:104px;height:104px;object-fit:contain;image-rendering:pixelated;
  border:1px solid #ccc;background:#fafafa}
.nc-msg{padding:8px 10px;border-radius:6px;margin:4px 0;font-family:system-ui,sans-serif}
.nc-msg.nc-error{background:#fdecea;color:#8a1c12;border:1px solid #f5c2bd}
.nc-msg.nc-info{background:#eef4fb;color:#12406e;border:1px solid #c7dbf0}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def message_html(text: str, kind: str = "error") -> str:
    return f'<div class="nc-msg nc-{kind}" data-kind="{kind}">{_e(text)}</div>'


class ExplorePage:
    """The page's state (the explorer, a thumbnail cache) and its handlers, free of Gradio so
    the handlers are testable as plain functions."""

    def __init__(self, explorer: Explorer, *, top_k: int = 8, results_path: str | None = None,
                 max_thumbs: int = 4096):
        self.explorer = explorer
        self.top_k = top_k
        self.results_path = results_path
        self._thumbs: OrderedDict[str, str] = OrderedDict()
        self._max_thumbs = max_thumbs

    # --- search ---------------------------------------------------------------------------
    def _thumb(self, path: Path) -> str:
        key = str(path)
        if key in self._thumbs:
            self._thumbs.move_to_end(key)
            return self._thumbs[key]
        uri = image_data_uri(path, max_px=208)
        self._thumbs[key] = uri
        if len(self._thumbs) > self._max_thumbs:
            self._thumbs.popitem(last=False)
        return uri

    def _rel(self, path: Path) -> str:
        root = self.explorer.root
        try:
            return str(path.relative_to(root)) if root else path.name
        except ValueError:
            return path.name

    def _row(self, kind: str, query: str, hits: dict[str, list[Hit]]) -> str:
        cols = []
        names = self.explorer.model_names
        for i, name in enumerate(names):
            figs = "".join(
                f'<figure class="nc-hit" data-model="{_e(name)}" data-kind="{kind}" data-rank="{h.rank}" '
                f'data-image="{_e(self._rel(h.path))}" data-score="{h.score:.6f}">'
                f'<img src="{self._thumb(h.path)}" alt="{_e(self._rel(h.path))}">'
                f'<figcaption>#{h.rank} · {h.score:.3f}<br>{_e(self._rel(h.path))}</figcaption></figure>'
                for h in hits[name])
            cols.append(f'<div class="nc-col" data-model="{_e(name)}" style="border-top:4px solid '
                        f'{PALETTE[i % len(PALETTE)]}"><h4>{_e(name)}</h4><div class="nc-grid">{figs}</div></div>')
        label = "query" if kind == "query" else "negation removed"
        return (f'<div class="nc-qrow" data-kind="{kind}"><div class="nc-qtitle">{label}: '
                f'“<span class="nc-qtext">{_e(query)}</span>”</div>'
                f'<div class="nc-cols" style="grid-template-columns:repeat({len(names)},minmax(0,1fr))">'
                f'{"".join(cols)}</div></div>')

    def search(self, query: str, k: float | int | None = None, affirmed: bool = False) -> str:
        """HTML of the top-k images per model for ``query`` (and its affirmative form)."""
        try:
            k = int(k or self.top_k)
            hits = self.explorer.search(query, k)
            rows = [self._row("query", query.strip(), hits)]
            if affirmed:
                aff = remove_negation(query.strip())
                if aff is None:
                    rows.append(message_html("no negation found in the query, so there is nothing to "
                                             "remove (the rule knows \"no\", \"not\", \"without\", "
                                             "\"lacking\", \"free of\", ...)", "info"))
                else:
                    rows.append(self._row("affirmed", aff, self.explorer.search(aff, k)))
            return f'<div class="nc-hits"><style>{_CSS}</style>{"".join(rows)}</div>'
        except NegationClipError as e:
            print(f"error: {e}", flush=True)
            return f"<style>{_CSS}</style>" + message_html(str(e))
        except Exception as e:  # never a traceback page; the terminal keeps the details
            traceback.print_exc()
            return f"<style>{_CSS}</style>" + message_html(f"unexpected error ({type(e).__name__}: {e}); "
                                                           "details in the terminal")

    def toggle(self, query: str, k: float | int | None = None, affirmed: bool = False) -> str:
        """The checkbox changed: search again, unless nothing was typed yet (no error for that)."""
        return self.search(query, k, affirmed) if (query or "").strip() else ""

    # --- results tab ----------------------------------------------------------------------
    def results(self, path: str) -> str:
        """A results file rendered as the HTML report's body, or a message."""
        path = (path or "").strip()
        if not path:
            return f"<style>{_CSS}</style>" + message_html(
                "give the path of a results.json (from `negationclip eval`), a compare.json or a "
                "demo report.json", "info")
        try:
            p = Path(path).expanduser()
            if not p.is_file():
                raise NegationClipError(f"{p}: no such file")
            return render_html(load_json(p), title=p.name, fragment=True, source=str(p))
        except NegationClipError as e:
            print(f"error: {e}", flush=True)
            return f"<style>{_CSS}</style>" + message_html(str(e))
        except Exception as e:
            traceback.print_exc()
            return f"<style>{_CSS}</style>" + message_html(f"unexpected error ({type(e).__name__}: {e})")

    # --- notices --------------------------------------------------------------------------
    def notices(self) -> str:
        ex = self.explorer
        parts = [message_html(f"{len(ex.paths) - len(ex.skipped)} images from {ex.root}; models: "
                              + ", ".join(ex.model_names), "info")]
        for msg in ex.load_errors.values():
            parts.append(message_html(msg))
        if ex.skipped:
            items = "".join(f"<li>{_e(r)}</li>" for r in list(ex.skipped.values())[:50])
            more = f"<li>… and {len(ex.skipped) - 50} more</li>" if len(ex.skipped) > 50 else ""
            parts.append(f'<div class="nc-msg nc-error" data-kind="skipped"><details><summary>'
                         f'{len(ex.skipped)} of {len(ex.paths)} images skipped (unreadable)</summary>'
                         f'<ul>{items}{more}</ul></details></div>')
        return f"<style>{_CSS}</style>" + "".join(parts)


def build_app(page: ExplorePage, title: str = "negationclip explore"):
    """The Gradio Blocks of the page (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\nType a query (try a negated one, e.g. *a star without a dot*): "
                    "each model's top images from the folder, side by side, with their cosine scores.")
        gr.HTML(page.notices(), elem_id="notices")
        with gr.Tab("Search", elem_id="tab-search"):
            with gr.Row():
                query = gr.Textbox(label="query", placeholder="a street with no cars", elem_id="query",
                                   scale=4)
                k = gr.Slider(1, 32, value=page.top_k, step=1, label="top-k", elem_id="top-k", scale=1)
                affirmed = gr.Checkbox(label="also without the negation", value=False,
                                       elem_id="affirmed", scale=1)
            go = gr.Button("Search", variant="primary", elem_id="search")
            hits = gr.HTML(elem_id="hits")
            for trigger in (go.click, query.submit):
                trigger(page.search, [query, k, affirmed], hits, show_progress="minimal")
            affirmed.change(page.toggle, [query, k, affirmed], hits, show_progress="minimal")
        with gr.Tab("Results", elem_id="tab-results"):
            with gr.Row():
                rpath = gr.Textbox(label="results file (results.json, compare.json or demo report.json)",
                                   value=page.results_path or "", elem_id="results-path", scale=4)
                load = gr.Button("Load", elem_id="load-results", scale=1)
            view = gr.HTML(page.results(page.results_path) if page.results_path else "",
                           elem_id="results-view")
            load.click(page.results, [rpath], view)
            rpath.submit(page.results, [rpath], view)
    return app


def serve(page: ExplorePage, *, host: str = "127.0.0.1", port: int = 7860,
          title: str = "negationclip explore", open_browser: bool = False) -> None:
    """Launch the page and block until Ctrl+C. System fonts only: the page needs no network."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    app = build_app(page, title)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    app.launch(server_name=host, server_port=port, share=False, inbrowser=open_browser,
               show_error=False, theme=theme, footer_links=[], quiet=False)

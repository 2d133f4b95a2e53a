"""The studio's HTML pages: a shell (title, nav bar, stylesheet) around a small body; the data
comes from the JSON API, drawn by the page's script in ``static/``. ``page`` is shared with the
chat, arena and deploy pages so that every view has the same nav bar."""

from __future__ import annotations

from html import escape
from pathlib import Path

NAV = (("/", "Runs"), ("/launch", "Launch"), ("/compare", "Compare"), ("/chat", "Chat"),
       ("/arena", "Arena"), ("/deploy", "Deploy"))


def page(title: str, body: str, scripts: tuple[str, ...] = (), active: str = "") -> str:
    """A whole page: ``body`` (trusted HTML) under the nav bar; ``scripts``: files in static/."""
    nav = "".join(f'<a href="{href}"{" class=on" if href == active else ""}>{name}</a>'
                  for href, name in NAV)
    tags = "".join(f'<script src="/static/{s}"></script>' for s in ("studio.js", *scripts))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)} - lmlab studio</title>"
            f"<link rel=stylesheet href='/static/studio.css'></head><body>"
            f"<nav id=nav><b>lmlab studio</b>{nav}</nav><main>{body}</main>{tags}</body></html>")


def message_page(title: str, message: str) -> str:
    return page(title, f"<h1>{escape(title)}</h1><p class=problem>{escape(message)}</p>")


def runs_page(root: Path) -> str:
    body = (f"<h1>Runs <small>in {escape(str(root))}</small></h1>"
            "<p><button id=compare disabled>Compare selected</button> "
            "<span id=count class=muted></span></p>"
            "<table id=runs class=grid><thead><tr><th></th><th>run</th><th>stage</th>"
            "<th>model</th><th>status</th><th>steps</th><th>metric</th><th>age</th>"
            "<th>problem</th></tr></thead><tbody></tbody></table>")
    return page("Runs", body, ("runs.js",), active="/")


def run_page(name: str) -> str:
    body = (f"<h1>Run <span id=name>{escape(name)}</span> <span id=status class=badge></span>"
            "</h1><p id=where class=muted></p><p id=problem class=problem></p>"
            "<div id=job class=job hidden><b>job</b> <span id=job-status></span> "
            "<code id=job-progress></code> <button id=stop>Stop</button></div>"
            "<p><button id=resume hidden>Resume</button> <a id=report hidden>Report</a> "
            "<button id=make-report>Make report</button> "
            "<a id=compare-link>Compare with...</a></p>"
            "<h2>Curves <small id=points class=muted></small></h2><div id=plots class=plots>"
            "</div><div class=cols><section><h2>Config</h2><table id=config class=grid>"
            "</table></section><section><h2>Summary</h2><pre id=summary></pre></section></div>")
    return page(f"Run {name}", body, ("plot.js", "run.js"))


def compare_page() -> str:
    body = ("<h1>Compare <span id=names></span></h1><p id=problem class=problem></p>"
            "<p><label><input type=checkbox id=all-keys> show keys that are the same</label>"
            "</p><h2>Curves</h2><div id=plots class=plots></div>"
            "<h2>Config (differences)</h2><table id=diff class=grid></table>"
            "<h2>Summary numbers</h2><table id=numbers class=grid></table>")
    return page("Compare", body, ("plot.js", "compare.js"), active="/compare")


def launch_page() -> str:
    body = ("<h1>Launch</h1>"
            "<h2>Jobs <small class=muted>(one runs at a time; the rest wait)</small></h2>"
            "<table id=jobs class=grid><thead><tr><th>job</th><th>status</th><th>run</th>"
            "<th>progress</th><th></th></tr></thead><tbody></tbody></table>"
            "<h2>New run</h2><form id=form onsubmit='return false'>"
            "<p><label>stage <select id=stage></select></label> "
            "<label>recipe <select id=recipe></select></label> "
            "<span id=stage-help class=muted></span></p>"
            "<p><button id=check type=button>Check</button> "
            "<button id=launch type=button>Launch</button> "
            "<code id=command class=muted></code></p><p id=general class=problem></p>"
            "<div id=fields class=fields></div></form>")
    return page("Launch", body, ("launch.js",), active="/launch")

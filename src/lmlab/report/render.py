"""Sections -> one self-contained HTML page (inline CSS, plots as base64 PNG, no URLs) and the
same content as markdown (plots as PNG files beside it)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

from lmlab.report.tables import Table, fmt


@dataclass
class Figure:
    name: str  # file stem, unique
    png: bytes
    caption: str = ""


@dataclass
class Section:
    title: str
    items: list = field(default_factory=list)  # Table | Figure | str (paragraph) | list[str]

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:18px;margin:30px 0 8px;padding-top:6px;
border-top:1px solid #dde1e7}h3{font-size:14px;margin:16px 0 6px;color:#38414f}
.meta{color:#5b6575;font-size:12px;margin:0 0 12px}
nav{font-size:13px;margin:6px 0 10px}nav a{margin-right:14px;color:#2456b8;text-decoration:none}
table{border-collapse:collapse;margin:6px 0 4px;background:#fff;font-size:13px;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
th,td{border:1px solid #dde1e7;padding:4px 9px;vertical-align:top;text-align:left}
th{background:#eef1f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}
td.t{white-space:nowrap}
td.s{max-width:300px;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;
white-space:pre-wrap;word-break:break-word}
.note{color:#5b6575;font-size:12px;margin:2px 0 12px}
ul.findings li{margin:3px 0}
figure{margin:10px 0 16px;background:#fff;padding:6px;display:inline-block;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
figure img{max-width:100%;display:block}figcaption{font-size:12px;color:#5b6575}
.scroll{overflow-x:auto}
"""


def _td(value, kind: str, wide: bool) -> str:
    text = fmt(value, kind)
    if kind != "text" and not isinstance(value, str):
        cls = "n"
    elif wide:
        cls = "s"
    else:  # short names (runs, models) stay on one line; long text wraps
        cls = "t" if len(text) <= 32 else ""
    text = html.escape(text)
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def table_html(t: Table, wide: bool = False, heading: bool = True) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(_td(v, t.kind(r, i), wide and i > 0)
                                    for i, v in enumerate(row)) + "</tr>"
                   for r, row in enumerate(t.rows))
    note = f'<p class="note">{html.escape(t.note)}</p>' if t.note else ""
    h3 = f"<h3>{html.escape(t.title)}</h3>" if heading else ""
    return (f"{h3}<div class=\"scroll\"><table><thead><tr>{head}"
            f"</tr></thead><tbody>{body}</tbody></table></div>{note}")


def to_html(title: str, meta: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>",
             f"<h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(meta)}</p>",
             "<nav>" + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>'
                               for s in sections) + "</nav>"]
    for s in sections:
        parts.append(f'<h2 id="{s.anchor}">{html.escape(s.title)}</h2>')
        for item in s.items:
            if isinstance(item, Table):
                parts.append(table_html(item, wide=s.title.startswith("Sample"),
                                        heading=item.title != s.title))
            elif isinstance(item, Figure):
                data = base64.b64encode(item.png).decode()
                parts.append(f'<figure><img alt="{html.escape(item.caption)}" '
                             f'src="data:image/png;base64,{data}"><figcaption>'
                             f"{html.escape(item.caption)}</figcaption></figure>")
            elif isinstance(item, list):
                parts.append('<ul class="findings">' + "".join(
                    f"<li>{html.escape(x)}</li>" for x in item) + "</ul>")
            else:
                parts.append(f"<p>{html.escape(str(item))}</p>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ⏎ ")


def table_md(t: Table, heading: bool = True) -> str:
    lines = [f"### {t.title}", ""] if heading else []
    lines += ["| " + " | ".join(map(_md_cell, t.columns)) + " |",
             "|" + "|".join("---:" if k != "text" else "---" for k in t.kinds) + "|"]
    for r, row in enumerate(t.rows):
        lines.append("| " + " | ".join(_md_cell(fmt(v, t.kind(r, i))) for i, v in enumerate(row))
                     + " |")
    if t.note:
        lines += ["", f"*{t.note}*"]
    return "\n".join(lines) + "\n"


def to_markdown(title: str, meta: str, sections: list[Section], plot_dir: str) -> str:
    parts = [f"# {title}", "", meta, ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        for item in s.items:
            if isinstance(item, Table):
                parts.append(table_md(item, heading=item.title != s.title))
            elif isinstance(item, Figure):
                parts += [f"![{item.caption}]({plot_dir}/{item.name}.png)", ""]
            elif isinstance(item, list):
                parts += [f"- {x}" for x in item] + [""]
            else:
                parts += [str(item), ""]
    return "\n".join(parts).rstrip() + "\n"

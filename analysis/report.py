"""The HTML report of one run: one self-contained file (`python -m sim report runs/<id>`).

Plots are PNGs embedded as `data:` URIs, styles are inline, and the one script only checks
that every plot decoded (it marks `<body data-plots-rendered=N>` and shows a warning if one
did not), so the file opens anywhere, offline, and can be mailed or attached as it is.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis.plots import PLOTS, natural_order
from analysis.run import RunFrames, load_run
from analysis.transcript import transcripts

_CAPTIONS = {
    "activity": "What each agent was doing, over time.",
    "locks": "Lock contention: wait per lock, and which holder kept which waiter waiting.",
    "tokens": "Tokens and cost per agent over time.",
    "commands": "Shell command outcomes per agent.",
    "messages": "Who sent messages to whom.",
}

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f4f4f4; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; }
#agent-list { columns: 4 12rem; padding-left: 1.2rem; }
details { border: 1px solid #ddd; border-radius: 4px; margin: .4rem 0; padding: .3rem .6rem; }
summary { cursor: pointer; font-weight: 600; }
.entry { border-top: 1px solid #f0f0f0; padding: .25rem 0; font-size: 13px; }
.entry .t { color: #999; font-family: monospace; }
pre { white-space: pre-wrap; word-break: break-word; background: #f7f7f7; margin: .2rem 0;
      padding: .3rem .5rem; font-size: 12px; } pre.error { background: #fbeaea; }
pre.say { background: #eef3fb; } .call { font-family: monospace; color: #2a5db0; }
.warning { background: #fbeaea; border: 1px solid #c44e52; padding: .5rem; }
"""

_CHECK = """
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("figure img"), ok = 0;
  imgs.forEach(function (img) { if (img.complete && img.naturalWidth > 0) ok++; });
  document.body.dataset.plotsRendered = String(ok);
  if (ok < imgs.length) {
    var p = document.createElement("p");
    p.className = "warning";
    p.textContent = (imgs.length - ok) + " plot(s) did not render in this browser.";
    document.body.insertBefore(p, document.body.firstChild);
  }
});
"""


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="–", float_format=lambda x: f"{x:,.3f}", border=0)


def agent_summary(run: RunFrames, run_id: str) -> pd.DataFrame:
    """One row per agent: model, turns, commands, failures, lock waits, tokens, cost, end."""
    pick = {n: f[f["run_id"] == run_id] for n, f in run.frames.items()}
    agents = pick["agents"].set_index("agent")
    cmds = pick["commands"].groupby("agent")
    locks = pick["locks"].groupby("agent")
    usage = pick["usage"].groupby("agent")
    cost_unknown = usage["cost_usd"].apply(lambda s: s.isna().any())
    out = pd.DataFrame(index=pd.Index(natural_order(agents.index), name="agent"))
    out["model"] = agents["model"]
    out["turns"] = agents["turns"]
    out["commands"] = cmds.size()
    out["failed"] = cmds["outcome"].apply(lambda s: int((s != "ok").sum()))
    out["lock waits"] = locks["contended"].sum()
    out["waited s"] = locks["wait"].sum()
    out["held s"] = locks["hold"].sum()
    out["tokens"] = usage["total_tokens"].sum()
    out["cost $"] = (
        usage["cost_usd"].sum().where(~cost_unknown.reindex(out.index, fill_value=False))
    )
    out["end"] = agents["end_reason"].fillna("(no end: killed?)")
    counts = ["commands", "failed", "lock waits", "tokens"]
    out[counts] = out[counts].fillna(0).astype(int)
    return out.reset_index()


def lock_summary(run: RunFrames, run_id: str) -> pd.DataFrame:
    locks = run.locks[run.locks["run_id"] == run_id]
    grouped = locks.groupby("lock")
    out = pd.DataFrame(
        {
            "acquisitions": grouped.size(),
            "contended": grouped["contended"].sum(),
            "waited s": grouped["wait"].sum(),
            "longest wait s": grouped["wait"].max(),
            "held s": grouped["hold"].sum(),
            "overdue": grouped["overdue"].sum(),
        }
    )
    return out.sort_values("waited s", ascending=False).reset_index()


def _locks_section(run: RunFrames, run_id: str) -> str:
    table = lock_summary(run, run_id)
    return _table(table) if len(table) else "<p>No locks were taken.</p>"


def _meta(run: RunFrames, run_id: str) -> str:
    row = run.runs[run.runs["run_id"] == run_id].iloc[0]
    items = [
        ("scenario", row["scenario"]),
        ("status", f"{row['status']}" + (f" ({row['reason']})" if pd.notna(row["reason"]) else "")),
        ("started", row["started"]),
        ("duration", f"{row['duration']:.2f} s"),
        ("agents", row["agents"]),
        ("events", f"{row['events']:,}"),
        ("seed", row["seed"]),
        ("directory", row["path"]),
    ]
    if run_id in run.torn_lines:
        items.append(("torn last line", "dropped: the writer was killed mid-line"))
    return (
        '<dl class="meta">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in items)
        + "</dl>"
    )


def render(run: RunFrames, run_id: str | None = None) -> str:
    """The report's HTML for one run of `run`."""
    run_id = run_id or run.run_ids[0]
    events = run.events[run.events["run_id"] == run_id]
    agents = natural_order(run.agents.loc[run.agents["run_id"] == run_id, "agent"])
    figures = []
    for key, plot in PLOTS.items():
        image = _png(plot(run, run_id))
        figures.append(
            f'<figure id="plot-{key}"><img alt="{escape(_CAPTIONS[key])}" '
            f'src="data:image/png;base64,{image}"><figcaption>{escape(_CAPTIONS[key])}'
            "</figcaption></figure>"
        )
    summary = agent_summary(run, run_id)
    texts = transcripts(events, agents)
    listing = "".join(f'<li><a href="#agent-{escape(a)}">{escape(a)}</a></li>' for a in agents)
    sections = []
    for _, row in summary.iterrows():
        name = str(row["agent"])
        what = f"{row['model']}, {row['turns']} turns, {row['end']}"
        head = f"{escape(name)} — {escape(what)}"
        sections.append(
            f'<details class="agent" id="agent-{escape(name)}"><summary>{head}</summary>'
            f"{texts.get(name, '')}</details>"
        )
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>sim report — {escape(run_id)}</title><style>{_STYLE}</style></head>
<body>
<h1>Run {escape(run_id)}</h1>
<p>Report made {made} by <code>python -m sim report</code>.</p>
{_meta(run, run_id)}
<h2>Agents</h2>
{_table(summary)}
<h2>Locks</h2>
{_locks_section(run, run_id)}
<h2>Plots</h2>
{"".join(figures)}
<h2>Transcripts</h2>
<ul id="agent-list">{listing}</ul>
{"".join(sections)}
<script>{_CHECK}</script>
</body></html>
"""


def write_report(path: str | Path, output: str | Path | None = None) -> Path:
    """Load the run at `path`, write its report (default `<run>/report.html`), return where.

    Raises RunLoadError (from `load_run`) when `path` is not a readable run."""
    return save_report(load_run(path), output)


def save_report(run: RunFrames, output: str | Path | None = None) -> Path:
    """Write the report of a loaded run (default `<run>/report.html`, or that name in
    `output` when it is a directory); return where."""
    target = Path(output) if output is not None else run.paths[0] / "report.html"
    if target.is_dir():
        target = target / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(run), encoding="utf-8")
    return target

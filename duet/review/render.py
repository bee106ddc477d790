"""The review page as HTML, rendered on the server from a ``PageState``.

Every piece of text goes through ``text()``: control and invisible characters escaped as
``duet.display.shown`` does everywhere the owner reads a scientist's words, then HTML-escaped.
What a scientist chose (request names and reasons, the names it claims, reasons it gave)
appears quoted, so it never passes for the page's own words.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Iterable
from typing import Literal
from urllib.parse import quote

from ..display import quoted, shown
from .state import (
    AccessRow,
    BudgetRow,
    ChargeRow,
    HandlerRow,
    PageState,
    PriceRow,
    RequestRow,
    StoreRow,
)

LONG = 2000  # characters of a scientist's reason shown (the rest is cut, with "…")


def text(value: object, limit: int = 200) -> str:
    """``value`` as HTML text: control characters escaped (display.shown), then HTML."""
    return html.escape(shown("" if value is None else value, limit), quote=True)


def said(value: object, limit: int = 200) -> str:
    """A scientist's words: quoted (display.quoted), then HTML-escaped."""
    return html.escape(quoted(value, limit), quote=True)


def clock(stamp: float | None) -> str:
    """A moment in local time: its time of day, and its date too if it was not today."""
    if stamp is None:
        return ""
    moment = datetime.datetime.fromtimestamp(stamp)
    today = moment.date() == datetime.date.today()
    return moment.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S")


def size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"


def _stamp(value: object) -> float | None:
    """A row's time (seconds since the epoch), or None."""
    if value is None or isinstance(value, int | float):
        return value
    raise TypeError(f"a time in seconds, not {type(value).__name__}")


def _bytes(value: object) -> int:
    """A row's byte count, as int() reads it."""
    if isinstance(value, int | float | str):
        return int(value)
    raise TypeError(f"a number of bytes, not {type(value).__name__}")


def _count(number: int, what: str) -> str:
    return f"{number:,} {what}" + ("" if number == 1 else "s")


def _title(waiting: int) -> str:
    return f"({waiting}) duet · review" if waiting else "duet · review"


def page(state: PageState) -> str:
    """The whole page (its script and style are served beside it, relative to its address)."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_title(len(state.pending))}</title>
<link rel="stylesheet" href="static/page.css">
<script src="static/page.js" defer></script>
</head>
<body>
<header>
<h1>duet <span class="dim">· the owner's review page</span></h1>
<p>owner ID <code>{text(state.owner_id)}</code> · <span id="live" class="live">connecting…</span></p>
</header>
<div id="notice" role="status" aria-live="polite"></div>
<main id="state">
{sections(state)}
</main>
</body>
</html>
"""


def sections(state: PageState) -> str:
    """The part of the page that changes: what the page fetches again when told to."""
    closed = (
        '<p class="closed">The owner\'s session is closed: nothing more can be decided here.</p>'
        if state.closed
        else ""
    )
    return "\n".join(
        [
            closed,
            _pending(state.pending),
            _scientists(state.scientists),
            _store(state.store),
            _handlers(state.handlers),
            _access(state.access),
            _privacy(state.budgets, state.charges),
            _audit(state.audit),
        ]
    )


def _table(headers: Iterable[str], rows: list[list[str]], empty: str, cls: str = "") -> str:
    if not rows:
        return f'<p class="empty">{empty}</p>'
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _tags(tags: list[str] | None, none: str = "none") -> str:
    if tags is None:
        return f'<span class="dim">{none}</span>'
    if not tags:
        return '<span class="dim">none</span>'
    return " ".join(f'<span class="tag">{text(t)}</span>' for t in tags)


def _who(name: object, scientist: object) -> str:
    # the name is the owner's own, or the scientist's claim, quoted and marked (node.claimed)
    shown_name = f"{text(name)} " if name else ""
    return f'{shown_name}<code class="id">{text(scientist)}</code>'


def _pending(requests: list[RequestRow]) -> str:
    cards = [_request(r) for r in requests]
    body = "".join(cards) if cards else '<p class="empty">No request is waiting for you.</p>'
    return (
        f'<section id="pending"><h2>Waiting for you <span class="count">{len(requests)}</span>'
        f"</h2>{body}</section>"
    )


def _request(r: RequestRow) -> str:
    rid = quote(str(r["id"]), safe="")
    shape = "" if r["shape"] is None else f" of shape {text(list(r['shape']))}"
    expires = (
        f"times out at {clock(r['expires'])}"
        if r["expires"] is not None
        else "waits until you decide"
    )
    preview = (
        f'<dt>value</dt><dd><code class="value">{text(r["preview"], 400)}</code></dd>'
        if r["preview"] is not None
        else ""
    )
    nbytes = f", {size(r['bytes'])}" if r["bytes"] else ""
    note = f'<p class="note">{text(r["note"], 400)}</p>' if r["note"] else ""
    depends = _tags(r["tags"]) if r["tags"] else '<span class="dim">no tagged data</span>'
    price = _price(r["privacy"])
    return f"""<article class="request" id="request-{rid}" data-request="{rid}">
<h3><span class="said">{said(r["name"])}</span> <span class="dim">from</span> {_who(r["scientist_name"], r["scientist"])}</h3>
<p class="reason"><span class="dim">reason:</span> <span class="said">{said(r["reason"], LONG)}</span></p>
<dl>
<dt>releases</dt><dd>a <b>{text(r["kind"])}</b>{shape}: {_count(r["elements"], "element")}{nbytes}</dd>
<dt>depends on</dt><dd>{depends}</dd>
<dt>made by</dt><dd><code>{text(r["op"] or "(the object itself)")}</code></dd>
{price}<dt>sha-256</dt><dd><code class="digest" title="{text(r["digest"])}">{text(r["digest"][:16])}…</code></dd>
{preview}
<dt>arrived</dt><dd>{clock(r["arrival"])}, {expires}</dd>
<dt>request ID</dt><dd><code>{text(r["id"])}</code></dd>
</dl>
{note}
<div class="decide">
<form class="decision" method="post" action="requests/{rid}/accept"><button class="accept" type="submit">Accept</button></form>
<form class="decision" method="post" action="requests/{rid}/deny"><button class="deny" type="submit">Deny</button></form>
</div>
</article>"""


def _price(price: PriceRow | None) -> str:
    """A DP release's price, for a request under a budget the owner reviews ("" otherwise)."""
    if price is None:
        return ""
    return (
        f'<dt>privacy</dt><dd class="price">charges <b>epsilon {_epsilon(price["epsilon"])}</b> '
        f"on {_tags([price['dataset']])} at delta {price['delta']:g}; "
        f"<b>{_epsilon(price['remaining_after'])}</b> would remain</dd>\n"
    )


def _scientists(rows: list[dict[str, object]]) -> str:
    table = _table(
        ["Scientist", "Name", "Connected since", "Objects", "Bytes", "Waiting", "Rule"],
        [
            [
                f'<code class="id">{text(r["id"])}</code>',
                text(r["name"]),
                clock(_stamp(r["since"])),
                f"{r['objects']:,}",
                size(_bytes(r["bytes"])),
                str(r["pending"]),
                text(r["rule"], 400),
            ]
            for r in rows
        ],
        "No scientist is connected.",
    )
    return f'<section id="scientists"><h2>Connected</h2>{table}</section>'


def _store(rows: list[StoreRow]) -> str:
    table = _table(
        ["ID", "Tags", "Description", "Type", "Shape", "Size", "Listed"],
        [
            [
                f"<code>{text(r['id'][:13])}</code>",
                _tags(r["tags"]),
                text(r["description"], 400),
                text(r["type"]),
                text(r["shape"]) if r["shape"] is not None else "",
                size(r["bytes"]),
                "yes" if r["listed"] else "no",
            ]
            for r in rows
        ],
        "Nothing is published.",
    )
    return f'<section id="store"><h2>Published</h2>{table}</section>'


_Constraint = Literal["name", "kind", "max_elements", "scientist", "element_quota"]
_CONSTRAINTS: tuple[_Constraint, ...] = (
    "name", "kind", "max_elements", "scientist", "element_quota",
)  # fmt: skip


def _handlers(rows: list[HandlerRow]) -> str:
    def constraints(r: HandlerRow) -> str:
        parts = []
        if r["tags"] is not None:
            parts.append("tags " + _tags(r["tags"]))
        for key in _CONSTRAINTS:
            if r[key] is not None:
                parts.append(f"{key.replace('_', ' ')} <code>{text(r[key])}</code>")
        if r["derived_inputs"]:
            parts.append("derived inputs")
        return ", ".join(parts) or '<span class="dim">anything</span>'

    table = _table(
        ["ID", "Action", "Matches", "Matched", "Released"],
        [
            [
                str(r["id"]),
                f'<span class="{text(r["action"])}">{text(r["action"])}</span>',
                constraints(r),
                str(r["matched"]),
                f"{r['released']:,}" if r["element_quota"] is not None else "",
            ]
            for r in rows
        ],
        "No handler: every request waits for you.",
    )
    return f'<section id="handlers"><h2>Handlers</h2>{table}</section>'


def _access(rows: list[AccessRow]) -> str:
    table = _table(
        ["Scientist", "Name", "Connect", "Data", "Requests"],
        [
            [
                text(r["scientist"]),
                text(r["name"]),
                "yes" if r["connect"] else "no",
                _tags(r["tags"], none="all"),
                "yes" if r["requests"] else "no",
            ]
            for r in rows
        ],
        "No access rule.",
    )
    return f'<section id="access"><h2>Access rules</h2>{table}</section>'


def _epsilon(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _mechanism(stored: str) -> str:
    """A charge's mechanism, from the JSON the ledger stores: its kind and parameters."""
    try:
        fields = json.loads(stored)
        kind = str(fields.pop("kind"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"<code>{text(stored)}</code>"
    names = {"dp_sgd": "DP-SGD", "laplace": "Laplace", "gaussian": "Gaussian"}
    parameters = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in fields.items())
    return f"{text(names.get(kind, kind))} <span class='dim'>{text(parameters)}</span>"


def _when(stamp: str) -> str:
    """A ledger time (ISO 8601, UTC) in local time, as the other times on the page."""
    try:
        return clock(datetime.datetime.fromisoformat(stamp).timestamp())
    except ValueError:
        return text(stamp)


def _privacy(budgets: list[BudgetRow], charges: list[ChargeRow]) -> str:
    def remaining(r: BudgetRow) -> str:
        if r["problem"] is not None:
            return f'<span class="deny">{text(r["problem"], 400)}</span>'
        if r["scientist"] == "*":
            return '<span class="dim">the default: each scientist without a budget</span>'
        if r["budget_of"] is None:
            return '<span class="dim">no budget now: refused</span>'
        shown = _epsilon(r["remaining"])
        spent_all = r["remaining"] is not None and r["remaining"] <= 0
        return f'<span class="deny">{shown}</span>' if spent_all else shown

    def whose(r: BudgetRow) -> str:
        shown = ""
        if r["budget_of"] == "*" and r["scientist"] != "*":
            shown += ' <span class="dim">(the default "*")</span>'
        if r["review"]:
            shown += ' <span class="dim">(each release waits for you)</span>'
        return shown

    table = _table(
        ["Scientist", "Dataset", "Budget (epsilon)", "Delta", "Spent", "Remaining"],
        [
            [
                f'<code class="id">{text(r["scientist"])}</code>',
                f'<span class="tag">{text(r["dataset"])}</span>',
                _epsilon(r["epsilon"]) + whose(r),
                "" if r["delta"] is None else f"{r['delta']:g}",
                _epsilon(r["spent"]),
                remaining(r),
            ]
            for r in budgets
        ],
        "No privacy budget: every DP release is refused.",
    )
    recent = _table(
        ["Time", "Scientist", "Dataset", "Mechanism", "State"],
        [
            [
                _when(c["at"]),
                f'<code class="id">{text(c["scientist"])}</code>',
                f'<span class="tag">{text(c["dataset"])}</span>',
                _mechanism(c["mechanism"]),
                text(c["state"]),
            ]
            for c in reversed(charges)
        ],
        "No DP charge yet.",
    )
    return (
        f'<section id="privacy"><h2>Privacy budgets</h2>{table}'
        f'<h3>Last DP charges <span class="dim">(newest first)</span></h3>{recent}</section>'
    )


def _event(event: dict[str, object]) -> str:
    kind = event.get("kind", "")
    if kind == "request":
        elements = event.get("elements")
        count = f" ({_count(int(elements), 'element')})" if isinstance(elements, int) else ""
        return f"asks for {said(event.get('request_name', ''))}{count}"
    if kind == "decision":
        return (
            f'<span class="{text(event.get("status", ""))}">{text(event.get("status", ""))}</span> '
            f"{said(event.get('request_name', ''))} by {text(event.get('decided_by', ''))}"
        )
    if kind == "release":
        digest = text(str(event.get("digest", ""))[:16])
        nbytes = _bytes(event.get("nbytes") or 0)
        kind = str(event.get("value_kind") or "value")
        what = size(nbytes) if nbytes else f"{'an' if kind[0] in 'aeiou' else 'a'} {text(kind)}"
        return f"released {what}, sha-256 <code>{digest}…</code>"
    if kind == "privacy":
        charged = event.get("epsilon")
        left = event.get("remaining")
        numbers = (
            f"epsilon {charged:.4g} ({left:.4g} left)"
            if isinstance(charged, float | int) and isinstance(left, float | int)
            else "epsilon"
        )
        return (
            f'charged {numbers} on <span class="tag">{text(event.get("dataset", ""))}</span>,'
            f" {text(event.get('state', ''))}"
        )
    if kind in ("leave", "refused"):
        return f"{said(event.get('reason', ''), 400)}"
    if kind == "node":
        return text(event.get("state", ""))
    return ""


def _audit(events: list[dict[str, object]]) -> str:
    table = _table(
        ["Time", "Event", "Scientist", "Request", "What"],
        [
            [
                clock(_stamp(e.get("time"))),
                f'<span class="event event-{text(e.get("kind", ""))}">{text(e.get("kind", ""))}</span>',
                _who(e.get("name", ""), e.get("scientist", "")) if e.get("scientist") else "",
                f"<code>{text(e.get('request', ''))}</code>",
                _event(e),
            ]
            for e in events
        ],
        "Nothing recorded yet.",
        cls="audit",
    )
    return f'<section id="audit"><h2>Audit log <span class="dim">(newest first)</span></h2>{table}</section>'

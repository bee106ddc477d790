"""The owner's review page: a local web page to see what scientists do and decide requests.

``launch_duet()`` and ``duet serve`` start it (``review=False``, ``[review] enabled = false``
turn it off) and print its address; ``duet.review()`` shows it in a notebook. It shows who is
connected, the store, the requests waiting with what each would release and Accept / Deny
buttons, the handlers, the access rules and the newest audit events, and updates as they
change (server-sent events; no reload).

Who may use it: it listens on 127.0.0.1 only, on a port the system picks, and every address
carries a random token (``secrets.token_urlsafe``): no token, no page. The token is not a
cookie; decisions carry it in their path, and one from another site (its ``Origin``) is
refused, so no other page the owner's browser opens can decide. What scientists chose
(names, reasons, claimed names) is shown as text: HTML-escaped, control characters escaped.

Layout: ``server.py`` (uvicorn in a thread), ``app.py`` (routes and who may use them),
``state.py`` (what is shown, read from the owner's objects), ``render.py`` (HTML),
``changes.py`` (waking open pages), ``static/`` (the page's script and style).
"""

from __future__ import annotations

import html

from .server import ReviewServer


def in_notebook() -> bool:
    """True in a Jupyter kernel (where a page can be shown in the output)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def show(server: ReviewServer, *, height: int = 720) -> str:
    """In a notebook, the page itself in the cell's output (an IFrame: its buttons work);
    elsewhere its address, printed. Returns the address."""
    if in_notebook():
        from IPython.display import IFrame, display

        display(IFrame(server.url, width="100%", height=height))
    else:
        print(f"♫♫♫ > the review page: {server.url}", flush=True)
    return server.url


def frame(server: ReviewServer, *, anchor: str = "", height: int = 480) -> str:
    """The page in an HTML iframe (a notebook's output), opened at the section ``anchor``."""
    url = server.url + (f"#{anchor}" if anchor else "")
    return (
        f'<iframe src="{html.escape(url, quote=True)}" width="100%" height="{int(height)}" '
        'style="border: 1px solid #ddd"></iframe>'
    )


__all__ = ["ReviewServer", "frame", "in_notebook", "show"]

"""``duet serve config.toml``: an owner node as a long-running process, no notebook.

Everything the config sets up (published files, handlers, access rules, privacy budgets) is in
place before
the node registers with the signaling server, so no scientist ever sees a half-built owner.
It then serves until SIGINT (Ctrl-C) or SIGTERM: every scientist is told the session closed,
and the audit log (one committed transaction per event) records that the node stopped.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError, DuetError
from ..identity import Identity
from ..launch import launch_duet
from ..sessions.owner import OwnerSession
from .config import Locator, NodeConfig, load_config
from .console import EventLog
from .files import load_publication


def build_owner(config: NodeConfig, locator: Locator, base: Path) -> OwnerSession:
    """The owner session the config describes, with its data, handlers and rules in place.
    Raises ConfigError naming the line of the entry at fault."""
    settings = config.owner
    owner = OwnerSession(
        max_bytes=config.limits.max_bytes,
        max_objects=config.limits.max_objects,
        max_pending_requests=config.limits.max_pending_requests,
        redact_errors=settings.redact_errors,
        data_root=_path(settings.data_root, base),
        identity=Identity.load_or_create(settings.identity, name="owner"),
        audit=_path(settings.audit, base) or _default_audit(),
        max_scientists=settings.max_scientists,
        unknown="confirm" if settings.unknown == "accept" else "refuse",
        request_timeout_secs=config.limits.request_timeout_secs,
        privacy_ledger=_path(settings.privacy_ledger, base),
    )
    try:
        for index, entry in enumerate(config.publish):
            try:
                value = load_publication(entry, base)
            except ConfigError as exc:
                raise ConfigError(f"{locator.line(('publish', index, 'path'))}: {exc}") from None
            try:
                owner.publish(
                    value, pointable=entry.pointable, tags=entry.tags,
                    description=entry.description, listed=entry.listed,
                )  # fmt: skip
            except DuetError as exc:  # listed without pointable
                raise ConfigError(f"{locator.line(('publish', index))}: {exc}") from None
        for index, handler in enumerate(config.handler):
            try:
                owner.requests.add_handler(**handler.model_dump())
            except DuetError as exc:
                raise ConfigError(f"{locator.line(('handler', index))}: {exc}") from None
        for index, rule in enumerate(config.access):
            try:
                # a scientist named here is let in without being asked (and known to this
                # identity once it has joined), under the name given here, whatever it claims
                if rule.connect:
                    owner.access.allow(
                        rule.scientist, tags=rule.tags, requests=rule.requests, name=rule.name
                    )
                else:
                    owner.access.deny(rule.scientist, name=rule.name)
            except DuetError as exc:
                raise ConfigError(f"{locator.line(('access', index))}: {exc}") from None
        for index, budget in enumerate(config.budget):
            # a new row in the ledger each start: the config is what is in force, and what
            # was spent stays spent (a budget removed from the config stays in the ledger)
            try:
                owner.privacy.set_budget(
                    budget.scientist, budget.data, epsilon=budget.epsilon, delta=budget.delta,
                    review=budget.review,
                )  # fmt: skip
            except DuetError as exc:
                raise ConfigError(f"{locator.line(('budget', index))}: {exc}") from None
    except BaseException:
        owner.close()
        raise
    return owner


def serve(config_path: str | Path, *, console: Console | None = None) -> int:
    """Run the node ``config_path`` describes until SIGINT or SIGTERM; the exit status."""
    console = console or Console(highlight=False, soft_wrap=True)  # a log: one line each
    path = Path(config_path)
    try:
        config, locator = load_config(path)
        owner = build_owner(config, locator, path.resolve().parent)
    except DuetError as exc:
        console.print(f"[red]duet serve: {exc}[/]", highlight=False, markup=True)
        return 2
    stop = threading.Event()
    stopped_by: list[str] = []

    def on_signal(number: int, _frame: FrameType | None) -> None:
        stopped_by.append(signal.Signals(number).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    # the kernel hands a signal to any thread: one that lands on the network loop's thread
    # would leave the main thread asleep in Event.wait (only its own signals interrupt it),
    # so the main thread waits on a pipe every caught signal is written to, whichever thread
    # it landed on
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous_wakeup = signal.set_wakeup_fd(wake_write)
    events = EventLog(console)
    owner.audit.add_listener(events)
    # a request no handler decides waits (for its timeout) and is told as it arrives; this
    # console cannot decide it, so no `duet.requests[...]` hint
    owner.notify(events.notice, hint=False)
    try:
        _summary(console, owner, config)
        settings = config.owner
        launch_duet(
            settings.signaling_url,  # none: a server of its own, stopped when the owner closes
            signaling_host=settings.signaling_host,
            signaling_port=settings.signaling_port,
            owner=owner,
            wait=False,
            confirm=False,  # no person at this console: access rules and `unknown` decide
            loopback=settings.loopback,
            ice_servers=settings.ice_servers,
            ice_hosts=settings.ice_hosts,
            review=config.review.enabled,
        )
        owner.audit.record("node", state="serving", owner_id=owner.identity.id)
        _wait_for_stop(wake_read, stop, stopped_by)
    except DuetError as exc:
        console.print(f"[red]duet serve: {exc}[/]")
        owner.close()
        return 1
    finally:
        signal.set_wakeup_fd(previous_wakeup)
        os.close(wake_read)
        os.close(wake_write)
        for number, handler in previous.items():
            signal.signal(number, handler)
    console.print(f"stopping ({stopped_by[0] if stopped_by else 'asked'})...")
    owner.close()
    owner.audit.record("node", state=f"stopped by {stopped_by[0] if stopped_by else 'request'}")
    console.print("stopped; the audit log is at " + str(owner.audit.path or "(memory)"))
    return 0


def _wait_for_stop(wake: int, stop: threading.Event, stopped_by: list[str]) -> None:
    """Block until SIGINT or SIGTERM arrives: each caught signal's number is written to
    ``wake`` (``signal.set_wakeup_fd``), whichever thread the kernel gave it to."""
    stops = {int(signal.SIGINT), int(signal.SIGTERM)}
    while not stop.is_set():
        got = [number for number in os.read(wake, 64) if number in stops]
        if got:  # the Python handler may not have run yet: what arrived says enough
            if not stopped_by:
                stopped_by.append(signal.Signals(got[0]).name)
            return


def _summary(console: Console, owner: OwnerSession, config: NodeConfig) -> None:
    table = Table(title="published", title_justify="left")
    for column in ("path", "type", "tags", "description"):
        table.add_column(column)
    for entry, stored in zip(config.publish, owner.objects.published(), strict=False):
        table.add_row(entry.path, stored.type_name, ", ".join(entry.tags), entry.description)
    console.print(table)
    console.print(f"{len(config.handler)} handlers, {len(config.access)} access rules; "
                  f"unknown scientists: {config.owner.unknown}")  # fmt: skip
    if config.budget:
        budgets = Table(title=f"privacy budgets ({owner.privacy.path})", title_justify="left")
        for column in ("scientist", "data", "epsilon", "delta", "spent"):
            budgets.add_column(column)
        for row in owner.privacy.rows():  # the ledger's: earlier runs' budgets show here too
            spent = row.get("spent")
            budgets.add_row(str(row["scientist"]), str(row["dataset"]),
                            f"{row.get('epsilon')}", f"{row.get('delta')}",
                            "" if spent is None else f"{spent:.4g}")  # fmt: skip
        console.print(budgets)
    wait = f"{config.limits.request_timeout_secs:g} s"
    console.print(
        f"a request no handler decides waits up to {wait} for you on the review page"
        if config.review.enabled
        else f"a request no handler decides times out after {wait} (the review page is off)"
    )


def _path(value: str | None, base: Path) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _default_audit() -> Path:
    from ..sessions.owner import default_audit_path

    return default_audit_path()

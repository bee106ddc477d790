"""Runs the demo: signaling server and owner as processes, the scientist here, one screen."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

STARTUP_SECS = 60.0


class _Child:
    """A child process whose stdout lines arrive on a queue (read with timeouts)."""

    def __init__(self, *args: str):
        env = {**os.environ, "DUET_ICE_HOSTS": os.environ.get("DUET_ICE_HOSTS", "127.0.0.1")}
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(
            target=lambda: self.stderr.extend(self.popen.stderr or []), daemon=True
        ).start()

    def _pump(self) -> None:
        for line in self.popen.stdout or []:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, what: str, timeout: float = STARTUP_SECS) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no {what} within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"the process ended before {what}:\n{''.join(self.stderr)[-2000:]}")
        return line

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def _show_owner(line: str, console: Console) -> None:
    try:
        event: dict[str, object] = json.loads(line)
    except ValueError:
        console.print(f"[dim]\\[owner] {line}[/dim]")
        return
    kind = event.get("event")
    if kind == "decision":
        colour = "green" if event["status"] == "accepted" else "red"
        console.print(
            f"[bold]\\[owner][/bold] request [cyan]{event['name']!r}[/cyan] [{colour}]{event['status']}[/{colour}] by {event['by']}"
        )
    elif kind == "print_local":
        console.print(f"[bold]\\[owner][/bold] [dim]{escape(str(event['text']))}[/dim]")
    elif kind == "published":
        console.print(
            f"[bold]\\[owner][/bold] published {event['items']} training digits, tagged 'digits-train'"
        )


def main(*, epochs: int = 4, batch_size: int = 64) -> float:
    """Run the demo; returns the downloaded model's accuracy on held-out digits."""
    console = Console()
    started = time.monotonic()
    from ..errors import DuetError

    server = _Child("-m", "signaling_server", "--host", "127.0.0.1", "--port", "0")
    owner = None
    try:
        url = server.next_line("the signaling server's address").rsplit(" ", 1)[-1]
        console.print(f"[bold]signaling server[/bold] on {url}")
        owner = _Child("-m", "duet.demo.owner", url)
        line = owner.next_line("the owner's session ID")
        while '"ready"' not in line:
            line = owner.next_line("the owner's session ID")
        session_id = json.loads(line)["session_id"]
        console.print(
            f"[bold]\\[owner][/bold] duet session {session_id} is waiting for a scientist"
        )

        def relay() -> None:
            while (text := owner.lines.get()) is not None:
                _show_owner(text, console)

        threading.Thread(target=relay, daemon=True).start()

        import duet as sy

        from .data import digits
        from .scientist import accuracy, train

        _, _, test_x, test_y = digits()
        with console.status("connecting over WebRTC..."):
            duet = sy.join_duet(session_id, url, loopback=True)
        with Progress(TextColumn("[bold]\\[scientist][/bold] epoch {task.fields[epoch]}"), BarColumn(),
                      MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                      console=console) as progress:  # fmt: skip
            task = progress.add_task("train", total=None, epoch=1, loss="?")

            last = {"loss": "?"}

            def on_batch(epoch: int, batch: int, batches: int, loss: float | None) -> None:
                if batch % 10 == 0:  # the tutorial asks for the loss every 10 batches
                    last["loss"] = "? (denied)" if loss is None else f"{loss:.4f}"
                if batch == 0:
                    progress.reset(
                        task, total=batches, epoch=f"{epoch}/{epochs}", loss=last["loss"]
                    )
                progress.update(task, advance=1, loss=last["loss"])

            model = train(duet, epochs=epochs, batch_size=batch_size, on_batch=on_batch)
        if model is None:
            raise DuetError("the owner did not approve the model download")
        score = accuracy(model, test_x, test_y)
        duet.close()
        console.print(
            "[bold]\\[scientist][/bold] downloaded the trained model with the owner's approval"
        )
        console.print(f"[bold green]accuracy on {len(test_y)} held-out digits: {score:.1%}[/bold green] "
                      f"({time.monotonic() - started:.0f} s in all)")  # fmt: skip
        return score
    finally:
        if owner is not None:
            owner.stop()
        server.stop()

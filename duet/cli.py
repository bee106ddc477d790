"""The ``duet`` command."""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="duet", description="Remote data science where the data never leaves its owner."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train the Duet tutorial's CNN on an owner's digits, all on this machine"
    )
    demo.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    demo.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    serve = commands.add_parser(
        "serve",
        help="run an owner node from a config file until Ctrl-C or SIGTERM",
        description="Publish the files a TOML config names, with its handlers, access rules "
        "and limits, and serve scientists until stopped. See the README's 'duet serve'.",
    )
    serve.add_argument("config", help="the node's config file (TOML)")
    parser.add_argument("--log-level", default="ERROR", help="library log level (default ERROR)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    if args.command == "demo":
        from .demo import main as demo_main

        score = demo_main(epochs=args.epochs, batch_size=args.batch_size)
        return 0 if score >= 0.95 else 1
    if args.command == "serve":
        from .serve import serve as run_node

        return run_node(args.config)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

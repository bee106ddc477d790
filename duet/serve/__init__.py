"""``duet serve``: an owner node run from a config file (published files, handlers, access
rules, limits), logging each decision on the console, stopped cleanly by Ctrl-C or SIGTERM."""

from .config import NodeConfig, load_config, parse_config
from .runner import build_owner, serve

__all__ = ["NodeConfig", "build_owner", "load_config", "parse_config", "serve"]

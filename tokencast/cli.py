"""The ``tokencast`` command: one subcommand per role, each a ``main(argv) -> int``.

Subcommands are looked up lazily so that ``tokencast edge run`` on a camera never imports the
cloud's torch code, and a missing optional dependency only breaks the subcommand that needs it.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, help). Each module exposes main(argv: list[str] | None) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "packet": ("tokencast.packet_cmd", "inspect packets and fragments"),
    "edge": ("edge.cli", "run the camera service"),
    "cloud": ("cloud.cli", "run the decoder worker and dashboard"),
    "gateway": ("cloud.gateway_cli", "forward a serial radio link to MQTT"),
    "models": ("models.cli", "evaluate the shipped models"),
    "demo": ("tokencast.demo", "run edge and cloud end to end on sample images"),
}


def version() -> str:
    """The installed distribution's version (pyproject.toml), or "unknown" when run from a bare checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("tokencast")
    except PackageNotFoundError:
        return "unknown (not installed)"


def usage() -> str:
    lines = ["usage: tokencast [--version] <command> [args]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"tokencast {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"tokencast: unknown command {name!r}; choose from {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    module_name = SUBCOMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"tokencast {name}: not available ({exc}); install the matching extra", file=sys.stderr)
        return 2
    try:
        return int(module.main(rest))
    except BrokenPipeError:  # output piped into `head` and the like: not an error worth a traceback
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

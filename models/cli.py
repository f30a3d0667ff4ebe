"""``tokencast models <verb>``: model utilities for the cloud side (needs torch)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        from models.evaluate import build_parser

        print("usage: tokencast models <verb> [options]\n\nverbs:\n  eval    tokenizer and restorer quality on "
              "images\n\n" + build_parser().format_help())
        return 0 if argv else 2
    if argv[0] == "eval":
        from models.evaluate import main as eval_main

        return eval_main(argv[1:])
    print(f"tokencast models: unknown verb {argv[0]!r}; choose from eval", file=sys.stderr)
    return 2

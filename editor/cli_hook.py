"""`dreamnodes edit`: the command-line entry of the editor.

`register(subparsers)` adds the command to the CLI's parser. Nothing here
imports Qt: the editor is imported only when the command runs, so the
command line works (and says what to install) without the `editor` extra.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from dreamnodes.errors import UsageError


def cmd_edit(args) -> int:
    if args.file is not None and not Path(args.file).exists():
        raise UsageError(f"no such file: {args.file}")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        # Qt would abort the process with a long message; say it plainly instead
        raise UsageError("the editor needs a display: run it in a desktop session (or under xvfb-run)")
    try:
        from dreamnodes.editor.app import main
    except ImportError as exc:
        raise UsageError(f"the editor needs its extra: pip install 'dreamnodes[editor]' ({exc})") from None
    return main([args.file] if args.file else [])


def register(subparsers) -> None:
    e = subparsers.add_parser("edit", help="open the node editor (a recipe, a picture made by dreamnodes, "
                                           "or the built-in DeepDream)")
    e.add_argument("file", nargs="?", help="recipe.yaml or picture.png")
    e.set_defaults(fn=cmd_edit)

"""``python -m multilora``: build flags for C/C++ hosts, else the ``multilora`` command line.

    python -m multilora --cflags       -I<include folder of the package>
    python -m multilora --libs         <path of libmultilora.so.N> -Wl,-rpath,<its folder>
    python -m multilora --includedir   the include folder (multilora.get_include())
    python -m multilora --library      the library's path (multilora.get_library())
    python -m multilora COMMAND ...    the same as ``multilora COMMAND ...`` (inspect, generate, ...)

e.g. ``cc app.c $(python -m multilora --cflags) $(python -m multilora --libs) -o app``.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    flags = ("--cflags", "--libs", "--includedir", "--library")
    if args and args[0] in flags:
        from . import _paths

        if len(args) != 1:
            print(f"multilora: {args[0]} takes no other argument", file=sys.stderr)
            return 2
        try:
            value = {
                "--cflags": _paths.cflags,
                "--libs": _paths.libs,
                "--includedir": _paths.get_include,
                "--library": _paths.get_library,
            }[args[0]]()
        except OSError as e:
            print(f"multilora: {e}", file=sys.stderr)
            return 1
        print(value)
        return 0
    from .cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())

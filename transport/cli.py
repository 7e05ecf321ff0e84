"""`lastr1 keys`: make the CurveZMQ key pairs of transport/curve_keys.py (its docstring shows the layout)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lastr1.transport.curve_keys import generate


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="keys", help="key folder (transport.keys_dir; default: keys)")
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--actors", nargs="+", metavar="ID", help="actor ids (default: actor0)")
    g.add_argument("-n", "--n-actors", type=int, help="make actor0 … actor{N-1}")
    parser.add_argument("--force", action="store_true",
                        help="replace existing keys (their holders need the new ones)")
    parser.add_argument("--add", action="store_true", help="only add actor keys next to an existing learner key")


def keys_main(args: argparse.Namespace) -> int:
    ids = args.actors or [f"actor{i}" for i in range(args.n_actors if args.n_actors is not None else 1)]
    try:
        written = generate(args.dir, ids, force=args.force, add=args.add)
    except (FileExistsError, ValueError) as e:
        print(f"lastr1 keys: error: {e}", file=sys.stderr)
        return 2
    d = Path(args.dir)
    for p in written:
        print(f"{'secret' if p.suffix == '.key_secret' else 'public'}  {p}")
    print(
        f"\nlearner host: {d}/learner.key_secret and {d}/actors/*.key (its allow-list)\n"
        f"each actor host: {d}/learner.key and {d}/actors/<its id>.key_secret\n"
        f"(the actor id in the config, actor.actor_id, must match the key's file name)"
    )
    return 0

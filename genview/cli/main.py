"""`genview` command line: a thin layer over the Python API (genview.pipeline, genview.datastore, ...).

Building the parser imports only the verb modules, which import nothing heavy at module level:
each handler imports what it runs. So `genview --help`, `--version` and the service client verbs
answer at once and work without torch installed.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from genview import __version__
from genview.extras import describe_import_error, missing_module
from genview.cli import api_commands, bench, demo, generate, models, quality, recipes, store_commands, train, web_commands

#: Each module adds its verbs to the parser and returns nothing; each verb's handler returns an exit code.
VERB_MODULES = (generate, recipes, store_commands, quality, models, train, demo, api_commands, web_commands, bench)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the epilog's line breaks, and state each option's default once.

    One rule: an option with a real default gets "(default: X)" appended, unless its text already
    says its default; flags (store_true / store_false) and options whose default is None (computed,
    or taken from the environment) get nothing appended: their text says what happens without them.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()  # the text already says what the default is
            or action.nargs == 0  # flags: their meaning is the text itself
            or default is None
            or default is argparse.SUPPRESS
            or default == []
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def build_parser() -> argparse.ArgumentParser:
    """Return the full `genview` argument parser."""
    parser = argparse.ArgumentParser(
        prog="genview",
        description="Generate K synthetic views of every image in a dataset with a conditional generative "
        "model (IC-GAN, CC-IC-GAN, ...) into a WebDataset + Parquet store, resumably.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"genview {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    for module in VERB_MODULES:
        module.add_parsers(sub, HelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `genview` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ImportError as exc:
        if missing_module(exc) == "genview":
            raise  # our own bug, not a missing package: keep the traceback
        # Handlers import their stack lazily: a verb whose packages are missing names the extra to install.
        print(f"genview {args.verb}: error: {describe_import_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: done shards are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`genview inspect --json | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Expected user-facing failures (bad spec, missing weights, store mismatch): no traceback.
        print(f"genview {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"genview {args.verb}: error: cannot write {exc.filename or ''}: permission denied "
              "(is the store read-only? choose another --out)", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.ENOSPC):
            raise
        print(f"genview {args.verb}: error: {exc.strerror}: {exc.filename or ''}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

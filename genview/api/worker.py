"""The job worker: runs `genview generate` for one spec and leaves an exit-status file behind.

The service may restart while a job runs, so the worker is not necessarily the child of whoever
asks how it ended. It therefore writes `exit.json` (exit code, error, time) beside its log when it
ends, and the service reads that instead of waiting on the process::

    python -m genview.api.worker --spec-json '{...}' --read-root /data --status-file JOBDIR/exit.json

Before generating, every source the store will read (the listing of a folder or list file, or the
store's frozen sources.parquet on resume) is checked against the read roots: a list file cannot be
used to read files outside them. SIGTERM stops the job the way Ctrl-C does: done shards are kept.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import signal
import sys
import traceback
from typing import Any, Sequence

from genview.pipeline.spec import GenerateSpec

#: Exit code when the listing reaches outside the read roots (argparse and user errors use 2).
EXIT_REFUSED = 3


def spec_to_argv(spec: GenerateSpec, extra_args: Sequence[str] = ()) -> list[str]:
    """Return the `genview generate` arguments that make exactly `spec`."""
    argv = ["generate", spec.source]
    for name in GenerateSpec.model_fields:
        value = getattr(spec, name)
        if name in ("source", "params") or value is None:
            continue  # every other field is passed explicitly, so CLI defaults never decide
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(item) for item in value)  # e.g. --alphas 0.2,0.4
        argv += [flag, str(value)]
    for name, value in sorted(spec.params.items()):
        argv += ["--param", f"{name}={json.dumps(value)}"]
    argv += ["--no-progress", *extra_args]
    return argv


class _TailingStream:
    """A text stream that passes writes through and remembers the last lines (to report the error)."""

    def __init__(self, stream: Any, lines: int = 40):
        self.stream = stream
        self.tail: collections.deque[str] = collections.deque(maxlen=lines)
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *done, self._partial = self._partial.split("\n")
        self.tail.extend(line for line in done if line.strip())
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def error_text(self) -> str | None:
        """The CLI's `genview generate: error:` message if it printed one, else the last lines."""
        lines = list(self.tail) + ([self._partial] if self._partial.strip() else [])
        for index in range(len(lines) - 1, -1, -1):
            if ": error: " in lines[index]:
                return "\n".join(lines[index:])[-4000:]
        return "\n".join(lines[-10:])[-4000:] or None


def check_listing(spec: GenerateSpec, read_roots: Sequence[str], base_dir: str) -> str | None:
    """Return why the job may not run when a source it would read is outside `read_roots`, else None.

    Each source is checked by the bytes that will be opened (`uri_bytes` where the name is not
    UTF-8) with every symlink followed (genview.confinement). The reads check again when they open
    each file, so a source swapped for a symlink after this check is still refused.
    """
    from genview import confinement
    from genview.api.paths import first_outside
    from genview.datastore.sources import list_sources
    from genview.datastore.store import Store

    store = Store(spec.out)
    try:
        table = store.read_sources() if store.exists() else None
    except FileNotFoundError:
        table = None
    if table is None:
        table = list_sources(spec.source)
    uris = table.column("uri").to_pylist()
    raws = table.column("uri_bytes").to_pylist() if "uri_bytes" in table.column_names else [None] * len(uris)
    outside = first_outside(uris, read_roots, base_dir)
    if outside is not None:
        uri, reason = outside
        return f"source {spec.source} lists {uri}, which you may not read: {reason}"
    for uri, raw in zip(uris, raws):
        path = raw if raw is not None else uri
        if not isinstance(path, bytes) and "://" in path and not path.startswith("file://"):
            continue  # URLs: checked by first_outside above (no symlinks in object stores)
        try:
            confinement.check_with(path, read_roots, "read", shown=uri)
        except confinement.OutsideRoots as exc:
            return f"source {spec.source} lists {uri}, which you may not read: {exc}"
        except OSError:
            continue  # missing or unreadable inside the roots: that source's row says so
    return None


def check_output(spec: GenerateSpec) -> str | None:
    """Return why the job may not write its store, else None.

    The service resolved `out` to a real path under the caller's output roots. If any folder on the
    way has since become a symlink, or a store file inside it leads out of it, the store would be
    written elsewhere: refused before anything is written.
    """
    from genview import confinement
    from genview.datastore import layout

    if "://" in spec.out and not spec.out.startswith("file://"):
        return None
    roots = [spec.out]
    for name in ("", layout.SOURCES_FILE, layout.SPEC_FILE, layout.SHARDS_DIR, layout.MANIFEST_DIR, layout.STATS_DIR):
        path = os.path.join(spec.out, name) if name else spec.out
        try:
            confinement.check_with(path, roots, "output", shown=f"out/{name}" if name else "out")
        except confinement.OutsideRoots as exc:
            return str(exc)
        except FileNotFoundError:
            continue  # created by the job
    return None


def check_model_paths(spec: GenerateSpec, weight_roots: Sequence[str], base_dir: str) -> str | None:
    """Return why the job may not run when its weights or a path param lie outside `weight_roots`, else None.

    The service checked these before accepting the job; checking again here means a record edited
    in the database, or a service bug, still cannot make the worker open an unchecked file.
    """
    from genview.api.paths import PathInvalid, PathRefused, resolve
    from genview.generator.registry import model_params

    declared = model_params(spec.model)
    named = [("weights", spec.weights), ("encoder_weights", spec.encoder_weights)]
    for name, value in sorted(spec.params.items()):
        if declared.get(name) == "path":
            named.append((f"params.{name}", value))
        elif isinstance(value, str) and name not in declared:
            return f"params.{name}: not a param of {spec.model}"
    for field, value in named:
        if value is None:
            continue
        try:
            resolve(str(value), field=field, roots=weight_roots, base_dir=base_dir, what="source or model")
        except (PathRefused, PathInvalid) as exc:
            return str(exc)
    return None


def write_status(path: str, status: dict[str, Any]) -> None:
    """Write the exit-status json atomically (the service may read it at any moment)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(status, fh)
    os.replace(tmp, path)


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM -> KeyboardInterrupt: the CLI stops like on Ctrl-C and done shards stay done."""
    raise KeyboardInterrupt(f"signal {signum}")


def _generate(spec: GenerateSpec, read_roots: Sequence[str], base_dir: str, extra_args: Sequence[str],
              tail: _TailingStream, weight_roots: Sequence[str] = ()) -> tuple[int, str | None]:
    """Check what the job would read, then run `genview generate`; return (exit code, error)."""
    from genview import confinement

    refused = check_model_paths(spec, weight_roots, base_dir) if weight_roots else None
    if refused is None and read_roots:
        refused = check_output(spec)
    if refused is not None:
        print(f"genview worker: error: {refused}", file=sys.stderr)
        return EXIT_REFUSED, refused
    previous = confinement.active()
    if read_roots:
        # From here on every file the job opens is opened under these roots (this process, its
        # threads, and the Ray actors it starts): see genview.confinement.
        confinement.install(confinement.Policy(read=tuple(read_roots), weights=tuple(weight_roots) or None,
                                               output=(spec.out,)))
    try:
        return _run_checked(spec, read_roots, base_dir, extra_args, tail)
    finally:
        confinement.install(previous)


def _run_checked(spec: GenerateSpec, read_roots: Sequence[str], base_dir: str, extra_args: Sequence[str],
                 tail: _TailingStream) -> tuple[int, str | None]:
    """Check the listing under the installed policy, then run `genview generate`."""
    from genview.cli.main import main as cli_main

    try:
        refused = check_listing(spec, read_roots, base_dir) if read_roots else None
    except (ValueError, OSError) as exc:
        # The source cannot be listed (missing, not a list file, no images): a user error, as in the CLI.
        print(f"genview generate: error: {exc}", file=sys.stderr)
        return 2, str(exc)
    if refused is not None:
        print(f"genview worker: error: {refused}", file=sys.stderr)
        return EXIT_REFUSED, refused
    # --live-progress: the service sees sources and views done inside a running shard.
    code = cli_main(spec_to_argv(spec, ["--live-progress", *extra_args]))
    return code, None if code == 0 else (tail.error_text() or f"genview generate exited with code {code}")


def model_refusal(spec: GenerateSpec, enabled: Sequence[str]) -> str | None:
    """Why the job's model may not run here (None when it may): `enabled` empty means no check."""
    if not enabled or spec.model in enabled:
        return None
    return (f"model {spec.model!r} is not enabled on this service (enabled now: {', '.join(sorted(enabled))}); "
            "the operator's enabled_models setting changed after the job was submitted")


def run(spec: GenerateSpec, read_roots: Sequence[str], base_dir: str, status_file: str | None, extra_args: Sequence[str],
        weight_roots: Sequence[str] = (), enabled_models: Sequence[str] = ()) -> int:
    """Run the job, record its exit status in `status_file`; return the exit code."""
    tail = _TailingStream(sys.stderr)
    sys.stderr = tail
    try:
        refused = model_refusal(spec, enabled_models)
        if refused is not None:
            print(f"genview worker: error: {refused}", file=sys.stderr)
            code, error = EXIT_REFUSED, refused
        else:
            code, error = _generate(spec, read_roots, base_dir, extra_args, tail, weight_roots)
    except KeyboardInterrupt:
        code, error = 130, "interrupted (cancelled): done shards are kept"
    except Exception as exc:  # anything unexpected: keep the traceback in the log, the gist in the status
        traceback.print_exc()
        code, error = 1, f"{type(exc).__name__}: {exc}"
    finally:
        sys.stderr = tail.stream
    if status_file:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # do not die half-way through the status file
        write_status(status_file, {
            "exit_code": code,
            "error": error,
            "pid": os.getpid(),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        })
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m genview.api.worker`."""
    parser = argparse.ArgumentParser(prog="python -m genview.api.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec-json", required=True, help="the GenerateSpec as JSON")
    parser.add_argument("--read-root", action="append", default=[], help="folder/URL prefix sources may come from (repeatable); none = no check")
    parser.add_argument("--weight-root", action="append", default=[],
                        help="folder/URL prefix weights and path params may come from (repeatable); none = no check")
    parser.add_argument("--base-dir", default=os.getcwd(), help="relative listed paths are taken from here")
    parser.add_argument("--status-file", help="where to write the exit-status json when done")
    parser.add_argument("--generate-arg", action="append", default=[], help="extra `genview generate` argument (repeatable)")
    parser.add_argument("--enabled-model", action="append", default=[], metavar="NAME",
                        help="a model the service enables (repeatable); the job's model must be one; none = no check")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    spec = GenerateSpec.model_validate_json(args.spec_json)
    return run(spec, args.read_root, args.base_dir, args.status_file, args.generate_arg, args.weight_root,
               args.enabled_model)


if __name__ == "__main__":
    sys.exit(main())

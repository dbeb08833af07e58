"""`genview serve / submit / jobs / status / cancel / logs`: the HTTP job service and its client."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Callable

SERVER_HELP = "service URL (default: $GENVIEW_SERVER or http://127.0.0.1:8000)"
TOKEN_HELP = "bearer token (default: $GENVIEW_TOKEN)"

SERVE_EPILOG = """\
settings (highest precedence first): these flags, GENVIEW_* environment variables, the TOML file
named by --settings / GENVIEW_SETTINGS_FILE, defaults. Main ones:
  GENVIEW_TOKENS=tok1,tok2          bearer tokens (or [tokens."tok"] tables with roots and limits in the file)
  GENVIEW_SOURCE_ROOTS / GENVIEW_OUTPUT_ROOTS   default read / write roots (default: the current folder)
  GENVIEW_DATABASE_URL              job database (default: sqlite file ./genview-jobs.sqlite)
  GENVIEW_RAY_ADDRESS               run jobs as Ray jobs on this cluster instead of local processes
  GENVIEW_AUTH_DISABLED=true        no tokens, for local use on 127.0.0.1 only (same as --no-auth)

Jobs keep running when the service stops; a restarted service finds them again.
"""

SUBMIT_EPILOG = """\
Everything after the submit options is a `genview generate` command line (see genview generate --help):
  genview submit --server http://gpu-box:8000 --wait imagenet/train --model icgan --k 10 --weights ckpt/icgan
Relative paths are taken from the service's folder. Without --out the store goes to SOURCE-MODEL-kK
in your first output root. Submitting again after a cancel resumes the store.
"""


def _client(args: argparse.Namespace):
    from genview.api.client import GenViewClient

    return GenViewClient(args.server, token=args.token)


def _handles_api_errors(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print the server's refusal (or an unreachable server) as one line and return 1."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from genview.api.client import GenViewAPIError, WaitTimeout

        try:
            return func(args)
        except BrokenPipeError:
            raise  # our reader went away (`genview jobs --json | head`): main() ends quietly, not an API error
        except (GenViewAPIError, ConnectionError, WaitTimeout) as exc:
            print(f"genview {args.verb}: error: {exc}", file=sys.stderr)
            return 1

    return wrapper


def _add_client_options(p: argparse.ArgumentParser) -> None:
    # Defaults stay None here (the client reads the environment) so --help never prints a token.
    p.add_argument("--server", help=SERVER_HELP)
    p.add_argument("--token", help=TOKEN_HELP)


def add_parsers(sub, formatter) -> None:
    """Add the service verbs."""
    p = sub.add_parser("serve", help="run the HTTP job service (FastAPI + uvicorn)",
                       description="Run the genview job service: submit `genview generate` jobs over HTTP, "
                       "follow their progress, cancel them. Models run in worker processes, never in the server.",
                       epilog=SERVE_EPILOG, formatter_class=formatter)
    p.add_argument("--host", help="interface to bind (default: GENVIEW_HOST or the settings file, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default: GENVIEW_PORT or the settings file, else 8000)")
    p.add_argument("--settings", help="TOML settings file (or GENVIEW_SETTINGS_FILE)")
    p.add_argument("--database-url", help="SQLAlchemy URL of the job database, e.g. postgresql+psycopg://... (or GENVIEW_DATABASE_URL)")
    p.add_argument("--no-auth", action="store_true", help="no bearer tokens: for local use on a loopback host only")
    p.add_argument("--log-level", help="uvicorn log level (default: the settings file, else info)")
    p.set_defaults(handler=run_serve)

    p = sub.add_parser("submit", help="submit a generate job to a genview service",
                       description="Submit a `genview generate` job to a genview service and print its id.",
                       epilog=SUBMIT_EPILOG, formatter_class=formatter)
    _add_client_options(p)
    p.add_argument("--id", dest="job_id", help="choose the job id; submitting the same id twice makes one job")
    p.add_argument("--idempotency-key", help="the same key twice makes one job (safe retries)")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends; exit 0 only if it succeeded")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.add_argument("generate_args", nargs=argparse.REMAINDER, metavar="SOURCE --model NAME ...",
                   help="the `genview generate` arguments")
    p.set_defaults(handler=run_submit)

    p = sub.add_parser("jobs", help="list your jobs on a genview service", formatter_class=formatter,
                       description="List your jobs, newest first.")
    _add_client_options(p)
    p.add_argument("--state", choices=["queued", "running", "succeeded", "failed", "cancelled"], help="only this state")
    p.add_argument("--limit", type=int, default=50, help="jobs per page")
    p.add_argument("--offset", type=int, default=0, help="jobs to skip")
    p.add_argument("--json", action="store_true", help="print the page as JSON")
    p.set_defaults(handler=run_jobs)

    p = sub.add_parser("status", help="state and progress of a job", formatter_class=formatter,
                       description="Show a job's state, its progress read from the store, and its error if it failed.")
    _add_client_options(p)
    p.add_argument("job_id", help="job id")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends; exit 0 only if it succeeded")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between polls with --wait")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(handler=run_status)

    p = sub.add_parser("cancel", help="cancel a job (done shards are kept)", formatter_class=formatter,
                       description="Stop a queued or running job. Its store keeps every done shard: submit the "
                       "same spec again to resume.")
    _add_client_options(p)
    p.add_argument("job_id", help="job id")
    p.set_defaults(handler=run_cancel)

    p = sub.add_parser("logs", help="the end of a job's log", formatter_class=formatter,
                       description="Print the last lines of a job's worker log.")
    _add_client_options(p)
    p.add_argument("job_id", help="job id")
    p.add_argument("--tail", type=int, default=200, help="lines from the end")
    p.set_defaults(handler=run_logs)


# -- handlers ------------------------------------------------------------------------------------
def run_serve(args: argparse.Namespace) -> int:
    """Run `genview serve`."""
    from genview.api.server import run_server
    from genview.api.settings import load_settings

    settings = load_settings(
        settings_file=args.settings, host=args.host, port=args.port, database_url=args.database_url,
        auth_disabled=True if args.no_auth else None, log_level=args.log_level,
    )
    run_server(settings)
    return 0


def spec_from_generate_args(argv: list[str]) -> dict[str, Any]:
    """Parse a `genview generate` command line into a job spec dict (None = server default)."""
    from genview.cli.main import build_parser
    from genview.pipeline.spec import GenerateSpec

    from genview.cli.generate import typed_params
    from genview.recipes import get_recipe

    args = build_parser().parse_args(["generate", *argv])
    model = args.model or (get_recipe(args.recipe).model if args.recipe else None)
    # Typed by the model's declaration when it is installed here; the service checks them either way.
    params = typed_params(model, args.param, known_here=False) if model else dict(args.param)
    if args.truncation is not None:
        params["truncation"] = args.truncation
    body: dict[str, Any] = {"source": args.source, "params": params}
    for name in GenerateSpec.model_fields:
        if name not in body and getattr(args, name, None) is not None:
            body[name] = getattr(args, name)
    if args.overwrite:
        raise ValueError("--overwrite is not available through the service: delete the store, or choose another --out")
    return body


def _progress_line(job) -> str:
    p = job.progress
    parts = [f"{p.sources_done}/{p.sources_total if p.sources_total is not None else '?'} sources"]
    if getattr(p, "sources_in_running_shards", 0):
        parts[0] += f" ({p.sources_in_running_shards} in running shards)"
    parts.append(f"{p.views_written} views")
    if p.failed_sources:
        parts.append(f"{p.failed_sources} failed")
    if p.views_per_second:
        parts.append(f"{p.views_per_second:.1f} views/s")
    if p.eta_seconds and job.state.value == "running":
        parts.append(f"ETA {p.eta_seconds:.0f} s")
    return ", ".join(parts)


def _print_job(job, as_json: bool) -> None:
    if as_json:
        print(job.model_dump_json(indent=2))
        return
    print(f"{job.id}  {job.state.value}  {_progress_line(job)}")
    print(f"  out    {job.spec.get('out')}")
    print(f"  model  {job.spec.get('model')}  k={job.spec.get('k')}  seed={job.spec.get('seed')}")
    if job.error:
        print(f"  error  {job.error}")


def _follow(client, job_id: str, poll: float, as_json: bool) -> int:
    last = [""]

    def show(job) -> None:
        line = f"{job.state.value}: {_progress_line(job)}"
        if line != last[0] and not as_json:
            print(line, file=sys.stderr)
            last[0] = line

    job = client.wait(job_id, poll=poll, on_update=show)
    _print_job(job, as_json)
    return 0 if job.state.value == "succeeded" else 1


@_handles_api_errors
def run_submit(args: argparse.Namespace) -> int:
    """Run `genview submit`."""
    # Submit options may also come after the generate arguments: pull them out first.
    late = argparse.ArgumentParser(add_help=False)
    for flag, dest in (("--server", "server"), ("--token", "token"), ("--id", "job_id"), ("--idempotency-key", "idempotency_key")):
        late.add_argument(flag, dest=dest, default=getattr(args, dest))
    for flag in ("--wait", "--json"):
        late.add_argument(flag, action="store_true", default=getattr(args, flag[2:]))
    late_args, args.generate_args = late.parse_known_args(args.generate_args)
    for name, value in vars(late_args).items():
        setattr(args, name, value)
    if not args.generate_args:
        print("genview submit: error: give the generate arguments, e.g. SOURCE --model icgan --weights DIR", file=sys.stderr)
        return 2
    body = spec_from_generate_args(args.generate_args)
    with _client(args) as client:
        job = client.submit(body, job_id=args.job_id, idempotency_key=args.idempotency_key)
        if args.wait:
            print(f"submitted {job.id}", file=sys.stderr)
            return _follow(client, job.id, 2.0, args.json)
    if args.json:
        print(job.model_dump_json(indent=2))
    else:
        print(job.id)
    return 0


@_handles_api_errors
def run_jobs(args: argparse.Namespace) -> int:
    """Run `genview jobs`."""
    with _client(args) as client:
        page = client.list(args.state, limit=args.limit, offset=args.offset)
    if args.json:
        print(page.model_dump_json(indent=2))
        return 0
    print(f"{'ID':<24} {'STATE':<10} {'CREATED':<20} {'PROGRESS':<44} OUT")
    for job in page.items:
        created = job.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{job.id:<24} {job.state.value:<10} {created:<20} {_progress_line(job):<44} {job.spec.get('out')}")
    shown = f"{page.offset + 1}-{page.offset + len(page.items)}" if page.items else "none"
    more = f"; next page: --offset {page.next_offset}" if page.next_offset is not None else ""
    print(f"({shown} of {page.total}{more})")
    return 0


@_handles_api_errors
def run_status(args: argparse.Namespace) -> int:
    """Run `genview status`."""
    with _client(args) as client:
        if args.wait:
            return _follow(client, args.job_id, args.poll, args.json)
        _print_job(client.get(args.job_id), args.json)
    return 0


@_handles_api_errors
def run_cancel(args: argparse.Namespace) -> int:
    """Run `genview cancel`."""
    with _client(args) as client:
        job = client.cancel(args.job_id)
    print(f"{job.id}  {job.state.value}  {_progress_line(job)}")
    return 0


@_handles_api_errors
def run_logs(args: argparse.Namespace) -> int:
    """Run `genview logs`."""
    with _client(args) as client:
        sys.stdout.write(client.logs(args.job_id, tail=args.tail))
    return 0

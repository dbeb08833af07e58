"""`genview browse STORE`: look at a store's sources and views in a web browser, read-only."""

from __future__ import annotations

import argparse
import sys


def add_parsers(sub, formatter) -> None:
    """Add the `browse` verb."""
    p = sub.add_parser(
        "browse",
        help="browse a store's sources and views in a web browser (read-only)",
        description="Serve the store pages for one store, local or s3://, without the job service: counts, "
        "model and weights, similarity histogram, per-class table, failed sources, and a grid of sources "
        "beside their views, sortable worst-first and filterable by class and similarity. Read-only.",
        formatter_class=formatter,
    )
    p.add_argument("store", help="store folder or URL (s3://bucket/store)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind; the pages have no login, so keep it on loopback "
                   "unless everyone who can reach it may see the store")
    p.add_argument("--port", type=int, default=8001, help="TCP port")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    p.set_defaults(handler=run_browse)


def run_browse(args: argparse.Namespace) -> int:
    """Run `genview browse`."""
    import uvicorn

    from genview.datastore.store import Store
    from genview.web.browse import create_browse_app
    from genview.web.guards import is_loopback
    from genview.web.store_view import empty_shards

    store = Store(args.store)
    if not store.exists():
        raise FileNotFoundError(f"{args.store} holds no genview store (no genview.json)")
    # A damaged header is one line and exit 2 (StoreError), before a server starts that could only show it.
    store.read_header()
    for problem in empty_shards(store, frozenset(store.done_shards())).values():
        print(f"genview browse: warning: {problem}: its sources have no images (`genview verify` reports it)",
              file=sys.stderr)
    if not is_loopback(args.host):
        print(f"genview browse: warning: serving {args.store} without a login on {args.host}", file=sys.stderr)
    print(f"genview browse: http://{args.host}:{args.port}/  ({args.store}, read-only; Ctrl-C to stop)", file=sys.stderr)
    uvicorn.run(create_browse_app(args.store, bind_host=args.host), host=args.host, port=args.port, log_level=args.log_level)
    return 0

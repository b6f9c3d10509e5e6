"""Command line: `python -m app` runs the service (migrating the database first);
`python -m app create-key NAME ROLE` prints a new API key; `python -m app revoke-key NAME`;
`python -m app retry-failed-actions`; `python -m app migrate`."""

import argparse
import gc
import logging
import sys


def _migrate(settings) -> None:
    from app.migrate import upgrade

    upgrade(settings.database_url)


def serve(args) -> None:
    import uvicorn

    from app.config import get_settings
    from app.main import create_app
    from app.telemetry import setup_telemetry

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _migrate(settings)
    telemetry = setup_telemetry("hitl-review", settings.environment)
    app = create_app(settings, telemetry=telemetry)
    tune_gc(settings.gc_gen0_threshold)
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def tune_gc(gen0_threshold: int) -> None:
    """Start-up objects (modules, models, routes) never become garbage: freeze them out of the
    collector's reach, and collect the young generation less often.

    Telemetry keeps every finished span alive until its batch is exported (up to 1 s), so at
    CPython's default threshold (700 surviving allocations) a busy process ran a collection every
    few requests, each walking the live objects of the request in flight (docs/benchmarks.md).
    """
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def create_key(args) -> None:
    from app.auth.models import Role
    from app.auth.service import create_key as create
    from app.config import get_settings
    from app.db import Database

    settings = get_settings()
    _migrate(settings)
    db = Database(settings)
    with db.sessionmaker() as session:
        key, token = create(session=session, name=args.name, role=Role(args.role))
    print(token)
    print(f"created key '{key.name}' with role {key.role.value}; store the token now, it is not shown again",
          file=sys.stderr)


def revoke_key(args) -> None:
    from app.auth.service import VERIFIED_KEY_TTL_SECONDS
    from app.auth.service import revoke_key as revoke
    from app.config import get_settings
    from app.db import Database

    settings = get_settings()
    _migrate(settings)
    db = Database(settings)
    with db.sessionmaker() as session:
        key = revoke(session=session, name=args.name)
    if key is None:
        sys.exit(f"no key named '{args.name}'")
    print(f"revoked key '{key.name}' ({key.role.value}); running replicas refuse it within "
          f"{VERIFIED_KEY_TTL_SECONDS:g} s", file=sys.stderr)


def retry_failed_actions(args) -> None:
    from app.config import get_settings
    from app.db import Database
    from app.reviews.flows import retry_failed

    settings = get_settings()
    _migrate(settings)
    db = Database(settings)
    with db.sessionmaker() as session:
        count = retry_failed(session=session)
    print(f"{count} failed action(s) due again; the replicas' outbox workers try each once more")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="run the service (the default)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p = sub.add_parser("create-key", help="create an API key and print its token")
    p.add_argument("name")
    p.add_argument("role", choices=["pipeline", "reviewer", "viewer", "admin"])
    p = sub.add_parser("revoke-key", help="revoke an API key by name")
    p.add_argument("name")
    sub.add_parser("retry-failed-actions", help="give every action that failed for good one more attempt")
    sub.add_parser("migrate", help="bring the database schema up to date")
    args = parser.parse_args(argv)
    if args.command == "create-key":
        create_key(args)
    elif args.command == "revoke-key":
        revoke_key(args)
    elif args.command == "retry-failed-actions":
        retry_failed_actions(args)
    elif args.command == "migrate":
        from app.config import get_settings

        _migrate(get_settings())
    else:
        if args.command is None:
            args = parser.parse_args(["serve"])
        serve(args)


if __name__ == "__main__":
    main()

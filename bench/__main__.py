"""`python -m bench`: measure our paths against the baselines on every reachable backend."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import (
    concurrency,
    galera,
    ingest,
    online_migration,
    pagination,
    peers,
    reads,
    replicas,
    team,
    transactions,
    updates,
    web,
)  # fmt: skip
from bench.chart import chart
from bench.harness import Measurement, bench_database, console, environment, reachable, report

BACKENDS = ("sqlite", "postgresql", "mariadb")
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--backend", default=",".join(BACKENDS), help="comma-separated backends")
    parser.add_argument("--rows", type=int, default=100_000, help="rows per ingest run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per path (median)")
    parser.add_argument("--items", type=int, default=200_000, help="items for the paging test")
    parser.add_argument(
        "--live-rows", type=int, default=1_000_000, help="rows for the online-migration test"
    )
    parser.add_argument(
        "--workloads",
        default="ingest,reads,tags,team,uow,updates,peers,pages,async,web,online-migration,galera,replicas",
        help="comma-separated workloads: ingest, reads, tags (query tags on and off), team (a "
        "model of examples/todo), uow, updates (at a known version), "
        "pages (with the streaming read), "
        "async, web (PostgreSQL), peers (Django's ORM, SQLModel and Tortoise ORM on the "
        "paths of a web request), online-migration (PostgreSQL, MariaDB), galera (a three-node "
        "cluster it starts, against the MariaDB server), replicas (a PostgreSQL primary and "
        "replica it starts)",
    )
    parser.add_argument(
        "--migrations",
        help="comma-separated online-migration runs (default: all), e.g. "
        "'naive retype,migration_ops retype'",
    )
    parser.add_argument("--quick", action="store_true", help="10k rows, 3 runs: a smoke run")
    parser.add_argument(
        "--paths", help="comma-separated paths to run (default: all), e.g. 'raw bulk load,seed'"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    rows, repeat = (10_000, 3) if args.quick else (args.rows, args.repeat)
    items = 20_000 if args.quick else args.items
    workloads = set(args.workloads.split(","))
    paths = {name.strip() for name in args.paths.split(",")} if args.paths else None

    for key, value in environment().items():
        console.print(f"{key}: {value}")
    results: list[Measurement] = []
    live_rows = 20_000 if args.quick else args.live_rows
    online: list[dict[str, object]] = []
    for backend in args.backend.split(","):
        if not reachable(backend):
            console.print(f"{backend}: not reachable, skipped")
            continue
        with bench_database(backend) as engine:
            if "ingest" in workloads:
                results += ingest.run_ingest(backend, engine, rows=rows, repeat=repeat, paths=paths)
            if "reads" in workloads:
                results += reads.run_reads(backend, engine, rows=min(rows, 5_000), repeat=repeat)
            if "tags" in workloads:
                results += reads.run_tags(backend, engine, rows=min(rows, 5_000), repeat=repeat)
            if "team" in workloads:
                results += team.run_team(backend, engine, rows=rows, repeat=repeat)
            if "uow" in workloads:
                count = max(min(rows // 20, 2_000), 10)
                results += transactions.run_transactions(
                    backend, engine, count=count, repeat=repeat
                )
            if "updates" in workloads:
                count = max(min(rows // 20, 2_000), 10)
                results += updates.run_updates(backend, engine, count=count, repeat=repeat)
            if "async" in workloads:
                results += concurrency.run_concurrency(
                    backend,
                    engine,
                    reads=max(min(rows // 50, 6_400), 128),
                    units=max(min(rows // 100, 1_280), 64),
                    rows=rows,
                    repeat=repeat,
                )
            if "web" in workloads:
                results += web.run_web(
                    backend, engine, requests=200 if args.quick else 2_000, repeat=repeat
                )
            if "peers" in workloads:
                results += peers.run_peers(
                    backend,
                    engine,
                    reads=min(rows // 10, 2_000),
                    items=min(items, 20_000),
                    repeat=repeat,
                )
            if "pages" in workloads:
                results += pagination.run_pagination(backend, engine, items=items, repeat=repeat)
            if "online-migration" in workloads and backend != "sqlite":
                only = set(args.migrations.split(",")) if args.migrations else None
                online += online_migration.run_online_migration(
                    backend, engine, rows=live_rows, only=only
                )
    if "galera" in workloads and "mariadb" in args.backend.split(",") and reachable("mariadb"):
        results += galera.run_galera(
            count=max(min(rows // 20, 2_000), 10), reads=max(min(rows // 20, 2_000), 10),
            repeat=repeat,
        )  # fmt: skip
    if "replicas" in workloads and "postgresql" in args.backend.split(","):
        results += replicas.run_replicas(count=max(min(rows // 50, 2_000), 10), repeat=repeat)
    if online:
        online_migration.save(online, args.out.with_name("online_migration.json"))
    ratios = (
        ingest.RATIOS + reads.RATIOS + team.RATIOS + transactions.RATIOS + updates.RATIOS
        + pagination.RATIOS + concurrency.RATIOS + peers.RATIOS + web.RATIOS + galera.RATIOS
        + replicas.RATIOS
    )  # fmt: skip
    if results:
        report(results, ratios, args.out)
        chart(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Runs Ariane segments with DuckDB over a local lake directory: the correctness oracle
and the performance reference for the DataFusion segments (tools/local/src/duckdb.rs
builds the job and reads the result; see docs/segments.md for the tables and views).

    .venv/bin/python scripts/duckdb_segments.py [job.json] [--out result.json]

The job (JSON, on stdin or from the file given):

    {"lake_dir": "/abs/lake", "snapshot_run_id": "20261123T060000Z", "bucket": null,
     "views": [["profile_links", "SELECT ..."], ...],          # rendered for DuckDB
     "segments": [{"name": "rfm", "sql": "SELECT ...", "key": ["tier"], "payload": [...]}],
     "threads": 2, "memory_limit": "1536MB", "temp_directory": null,
     "events_pattern": null, "links_pattern": null}

`events_pattern` / `links_pattern` (globs under `lake_dir`, optional) read a compacted
generation (`events_by_profile/gen=<G>/bucket=*/*.parquet`, `.../history/*.parquet`, where
`channel`, `event_date` and `resolved_date` are columns) instead of `events/` and
`identity/links/` (where they are folder names).

The result (JSON, on stdout or to --out):

    {"duckdb_version": "2.0.0", "threads": 2, "setup_seconds": 0.1, "peak_rss_mb": 812.0,
     "segments": [{"name": "rfm", "rows": 123, "seconds": 0.4, "columns": ["profile_id", "tier"],
                   "members": [["p_1", "loyal"], ...],            # distinct, sorted
                   "payloads": [{"tier": "loyal", ...}, ...],     # aligned with members
                   "ambiguous_payloads": 0}]}

`seconds` is the wall time of running the segment's query to completion into a temporary
table (what DataFusion's `collect` does); reading the members back into Python is not
counted. `peak_rss_mb` is the process's peak resident set (getrusage), Python included.

The SQL is DataFusion's, rendered for DuckDB by `catalog::render` (run parameters) and
`ariane_local::duckdb::duckdb_dialect` (documented rewrites). Semantics DuckDB would
otherwise differ on are pinned by session settings instead of rewrites:

- `TimeZone = 'UTC'`: interval arithmetic and casts of TIMESTAMPTZ happen in UTC (the
  lake's timestamps are UTC instants; DataFusion computes `occurred_at - INTERVAL '1 day'`
  in the column's zone, UTC);
- `default_null_order = 'nulls_last_on_asc_first_on_desc'`: NULLs sort as the largest
  value, like DataFusion (and PostgreSQL); DuckDB's default puts them last either way;
- `integer_division = true`: `/` between integers truncates, like DataFusion; DuckDB's
  default `/` returns a DOUBLE;
- partition columns (`channel`, `event_date`, `resolved_date`, `bucket`) are read as
  VARCHAR (`hive_types`), as DataFusion's listing tables declare them; DuckDB would
  otherwise infer `event_date` as DATE.
"""

import glob
import json
import os
import resource
import sys
import time

try:
    import duckdb
except ImportError:  # pragma: no cover - reported to the Rust wrapper
    sys.stderr.write(
        "duckdb is not installed in this Python environment: run `make bootstrap` "
        "(installs infra/local/requirements.txt into .venv)\n"
    )
    sys.exit(3)


EVENT_COLUMNS = [
    ("event_id", "VARCHAR"),
    ("event_type", "VARCHAR"),
    ("occurred_at", "TIMESTAMPTZ"),
    ("anchor_id", "VARCHAR"),
    ("email_hash", "VARCHAR"),
    ("phone_hash", "VARCHAR"),
    ("order_id", "VARCHAR"),
    ("sku", "VARCHAR"),
    ("product_name", "VARCHAR"),
    ("category", "VARCHAR"),
    ("quantity", "BIGINT"),
    ("unit_price_minor", "BIGINT"),
    ("line_total_minor", "BIGINT"),
    ("order_total_minor", "BIGINT"),
    ("currency", "VARCHAR"),
    ("store_id", "VARCHAR"),
    ("campaign_id", "VARCHAR"),
    ("page_url", "VARCHAR"),
    ("consent_channel", "VARCHAR"),
    ("source_key", "VARCHAR"),
    ("source_line", "UBIGINT"),
    ("local_time", "VARCHAR"),
    ("channel", "VARCHAR"),
    ("event_date", "VARCHAR"),
]
LINK_COLUMNS = [
    ("identifier_hash", "VARCHAR"),
    ("profile_id", "VARCHAR"),
    ("resolved_at", "TIMESTAMPTZ"),
    ("observation_id", "VARCHAR"),
    ("resolved_date", "VARCHAR"),
]
PROFILE_COLUMNS = [
    ("profile_id", "VARCHAR"),
    ("first_seen_at", "TIMESTAMPTZ"),
    ("last_seen_day", "VARCHAR"),
    ("channels", "VARCHAR"),
    ("has_email", "BOOLEAN"),
    ("has_phone", "BOOLEAN"),
    ("has_push_token", "BOOLEAN"),
    ("email_opt_in", "BOOLEAN"),
    ("sms_opt_in", "BOOLEAN"),
    ("push_opt_in", "BOOLEAN"),
    ("ads_opt_in", "BOOLEAN"),
    ("email_reachable", "BOOLEAN"),
    ("sms_reachable", "BOOLEAN"),
    ("push_reachable", "BOOLEAN"),
]


def sql_string(s):
    return "'" + s.replace("'", "''") + "'"


def register(con, name, pattern, columns, partitions):
    """A view over the Parquet files matching `pattern` (hive partitions typed VARCHAR),
    or over an empty relation of the same columns when there is no file (DuckDB's
    read_parquet fails on an empty glob; DataFusion's listing table is then empty)."""
    if glob.glob(pattern, recursive=True):
        if partitions:
            types = "{" + ", ".join(f"{sql_string(p)}: 'VARCHAR'" for p in partitions) + "}"
            source = f"read_parquet({sql_string(pattern)}, hive_partitioning = true, hive_types = {types})"
        else:
            source = f"read_parquet({sql_string(pattern)}, hive_partitioning = false)"
        cols = ", ".join(c for c, _ in columns)
        con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM {source}")
    else:
        cols = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns)
        con.execute(f"CREATE VIEW {name} AS SELECT {cols} WHERE false")


def text_expr(column, type_name):
    """SQL turning a result column into text as the DataFusion side formats it (Arrow's
    display, NULL as ''): timestamps with a zone as RFC 3339 in UTC with `Z` and only the
    fraction needed (`2026-11-23T06:30:00Z`, `...:00.250Z`, `...:00.000250Z`), booleans as
    `true`/`false`, everything else as DuckDB casts it to VARCHAR. Done in SQL so Python
    never converts values (TIMESTAMPTZ values would need pytz)."""
    c = quote_ident(column)
    t = type_name.upper()
    if t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        us = f"(epoch_us({c}) % 1000000)"
        expr = (
            f"strftime({c}, '%Y-%m-%dT%H:%M:%S') || CASE WHEN {us} = 0 THEN '' "
            f"WHEN {us} % 1000 = 0 THEN '.' || lpad(CAST({us} // 1000 AS VARCHAR), 3, '0') "
            f"ELSE '.' || lpad(CAST({us} AS VARCHAR), 6, '0') END || 'Z'"
        )
    elif t == "TIMESTAMP":
        expr = f"strftime({c}, '%Y-%m-%dT%H:%M:%S.%f')"
    else:
        expr = f"CAST({c} AS VARCHAR)"
    return f"COALESCE({expr}, '')"


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def open_lake(job):
    """A DuckDB connection over the job's lake: the session settings, the tables
    (`raw_events`, `identity_links`, `profiles`) and the job's views. Returns the
    connection, its thread count and the seconds the tables and views took (also used by
    `scripts/duckdb_measures.py`)."""
    lake = os.path.abspath(job["lake_dir"])
    threads = int(job.get("threads") or os.cpu_count() or 1)
    con = duckdb.connect(":memory:")
    settings = [
        "SET TimeZone = 'UTC'",
        "SET default_null_order = 'nulls_last_on_asc_first_on_desc'",
        "SET integer_division = true",
        f"SET threads = {threads}",
    ]
    if job.get("memory_limit"):
        settings.append(f"SET memory_limit = {sql_string(str(job['memory_limit']))}")
    if job.get("temp_directory"):
        settings.append(f"SET temp_directory = {sql_string(job['temp_directory'])}")
    for s in settings:
        con.execute(s)

    t0 = time.perf_counter()
    # A compacted generation names its files by glob and holds the partition values as
    # columns; the ingest layout holds them in the folder names.
    if job.get("events_pattern"):
        register(con, "raw_events", f"{lake}/{job['events_pattern']}", EVENT_COLUMNS, [])
    else:
        register(con, "raw_events", f"{lake}/events/**/*.parquet", EVENT_COLUMNS, ["channel", "event_date"])
    if job.get("links_pattern"):
        register(con, "identity_links", f"{lake}/{job['links_pattern']}", LINK_COLUMNS, [])
    else:
        register(con, "identity_links", f"{lake}/identity/links/**/*.parquet", LINK_COLUMNS, ["resolved_date"])
    snapshot = f"{lake}/segments/_runs/{job['snapshot_run_id']}/profiles"
    if job.get("bucket") is None:
        register(con, "profiles", f"{snapshot}/**/*.parquet", PROFILE_COLUMNS + [("bucket", "VARCHAR")], ["bucket"])
    else:
        register(con, "profiles", f"{snapshot}/bucket={int(job['bucket'])}/*.parquet", PROFILE_COLUMNS, [])
    for name, sql in job.get("views", []):
        try:
            con.execute(f"CREATE VIEW {name} AS {sql}")
        except duckdb.Error as e:
            raise SystemExit(f"view {name}: {e}\n--- SQL ---\n{sql}")
    return con, threads, time.perf_counter() - t0


def run(job):
    con, threads, setup = open_lake(job)
    results = []
    for seg in job.get("segments", []):
        name, sql = seg["name"], seg["sql"]
        keys = list(seg.get("key") or [])
        payload = list(seg.get("payload") or [])
        start = time.perf_counter()
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE segment_result AS {sql}")
        except duckdb.Error as e:
            raise SystemExit(f"segment {name}: {e}\n--- SQL ---\n{sql}")
        seconds = time.perf_counter() - start
        rows = con.execute("SELECT COUNT(*) FROM segment_result").fetchone()[0]
        cols = ["profile_id"] + keys
        wanted = cols + payload
        types = {r[0]: r[1] for r in con.execute("DESCRIBE segment_result").fetchall()}
        have = list(types)
        missing = [c for c in wanted if c not in types]
        if missing:
            raise SystemExit(f"segment {name}: the result has no column {missing} (columns: {have})")
        # Distinct members (profile_id + key values as text), each with its payload when
        # the query gave that member a single one.
        select = ", ".join(f"{text_expr(c, types[c])} AS {quote_ident(c)}" for c in wanted)
        order = ", ".join(quote_ident(c) for c in cols)
        cur = con.execute(
            f"SELECT DISTINCT {select} FROM segment_result WHERE profile_id IS NOT NULL ORDER BY {order}"
        )
        members, payloads, ambiguous = [], [], 0
        while True:
            chunk = cur.fetchmany(100_000)
            if not chunk:
                break
            for row in chunk:
                member = list(row[: len(cols)])
                values = dict(zip(payload, row[len(cols):]))
                if members and members[-1] == member:
                    if payloads[-1] is not None and payloads[-1] != values:
                        payloads[-1] = None
                        ambiguous += 1
                    continue
                members.append(member)
                payloads.append(values)
        con.execute("DROP TABLE segment_result")
        results.append({
            "name": name,
            "rows": rows,
            "seconds": seconds,
            "columns": cols,
            "members": members,
            "payloads": payloads,
            "ambiguous_payloads": ambiguous,
        })
        sys.stderr.write(f"duckdb: {name}: {len(members)} members ({rows} rows) in {seconds:.3f}s\n")

    return {
        "duckdb_version": duckdb.__version__,
        "threads": threads,
        "setup_seconds": setup,
        "peak_rss_mb": peak_rss_mb(),
        "segments": results,
    }


def main(argv, run_job=None):
    """The command line of this script and of `scripts/duckdb_measures.py`: the job from the
    file given (or stdin), `run_job` (this script's `run` by default) on it, the result as
    JSON to `--out` (or stdout)."""
    run_job = run_job or run
    out_path = None
    if "--out" in argv:
        i = argv.index("--out")
        out_path = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if argv and argv[0] != "-":
        with open(argv[0], encoding="utf-8") as f:
            job = json.load(f)
    else:
        job = json.load(sys.stdin)
    result = run_job(job)
    if out_path:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(result, f)
    else:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])

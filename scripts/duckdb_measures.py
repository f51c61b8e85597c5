#!/usr/bin/env python3
"""Runs Ariane's daily measures (`measures/*.sql`) with DuckDB over a local lake directory:
the correctness oracle and the performance reference of the measures function's SQL
(tools/local/src/measures_duckdb.rs builds the job and compares the results; see
docs/measurement.md for the measures).

    .venv/bin/python scripts/duckdb_measures.py [job.json] [--out result.json]

The job (JSON, on stdin or from the file given): the lake and views as for
`scripts/duckdb_segments.py` (same tables, same session settings, same views rendered for
DuckDB), the measures instead of segments, and where to write their results:

    {"lake_dir": "/abs/lake", "snapshot_run_id": "measures-20261123", "bucket": null,
     "views": [["profile_links", "SELECT ..."], ...], "materialise": ["orders"],
     "measures": [{"name": "funnel", "sql": "WITH ev AS (...) SELECT ..."}],
     "out_dir": "/abs/out", "threads": 2, "memory_limit": "1504MB", "temp_directory": null,
     "explain_dir": null}

The views of `materialise` are computed once, into temporary tables of the same names,
before the measures run (the function does the same: ariane_measures::run::
MATERIALISED_VIEWS); the time counts in `setup_seconds`. With `explain_dir`, each measure's `EXPLAIN ANALYZE` is also written there, as
`<name>.duckdb.txt`, after its timed run.

Each measure's result is written to `<out_dir>/<name>.parquet` (DuckDB's own types:
`SUM(BIGINT)` is a HUGEINT, which DuckDB writes as a DOUBLE; the Rust side compares
numbers as numbers).

The result (JSON, on stdout or to --out):

    {"duckdb_version": "2.0.0", "threads": 2, "setup_seconds": 0.1, "peak_rss_mb": 812.0,
     "measures": [{"name": "funnel", "rows": 6, "seconds": 0.4, "file": "/abs/out/funnel.parquet"}]}

`seconds` is the wall time of running the measure's query to completion into a temporary
table (what DataFusion's `collect` does); writing the Parquet file is not counted.
`peak_rss_mb` is the process's peak resident set (getrusage), Python included; no result
row ever enters Python.
"""

import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from duckdb_segments import duckdb, main, open_lake, peak_rss_mb, quote_ident, sql_string  # noqa: E402


# The activation records (`activations/decided_date=<d>/`, shared/src/lake.rs
# `activations_schema`): the `touchpoints` measure counts Ariane's own campaign sends.
ACTIVATION_COLUMNS = [(c, "VARCHAR") for c in (
    "activation_key", "send_key", "campaign", "segment", "run_id", "profile_id", "change", "group",
    "channel", "outcome", "reason", "destination", "template")] + [
    ("decided_at", "TIMESTAMPTZ"), ("conversion_until", "TIMESTAMPTZ")]


def register_activations(con, lake):
    """The `activations` view, as the measures function registers it (`decided_date` a
    VARCHAR partition); empty, with the same columns, when the lake has no record."""
    pattern = f"{lake}/activations/**/*.parquet"
    columns = ACTIVATION_COLUMNS + [("decided_date", "VARCHAR")]
    if glob.glob(pattern, recursive=True):
        cols = ", ".join(quote_ident(c) for c, _ in columns)
        source = f"read_parquet({sql_string(pattern)}, hive_partitioning = true, hive_types = {{'decided_date': 'VARCHAR'}})"
        con.execute(f"CREATE VIEW activations AS SELECT {cols} FROM {source}")
    else:
        cols = ", ".join(f"CAST(NULL AS {t}) AS {quote_ident(c)}" for c, t in columns)
        con.execute(f"CREATE VIEW activations AS SELECT {cols} WHERE false")


def run(job):
    con, threads, setup = open_lake(job)
    start = time.perf_counter()
    # The views the function computes once before the measures (ariane_measures::run::
    # MATERIALISED_VIEWS): a temporary table of the same name shadows the view.
    for name in job.get("materialise", []):
        con.execute(f"CREATE TEMP TABLE {quote_ident(name)} AS SELECT * FROM main.{quote_ident(name)}")
    setup += time.perf_counter() - start
    register_activations(con, os.path.abspath(job["lake_dir"]))
    out_dir = os.path.abspath(job["out_dir"])
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for measure in job.get("measures", []):
        name, sql = measure["name"], measure["sql"]
        start = time.perf_counter()
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE measure_result AS {sql}")
        except duckdb.Error as e:
            raise SystemExit(f"measure {name}: {e}\n--- SQL ---\n{sql}")
        seconds = time.perf_counter() - start
        rows = con.execute("SELECT COUNT(*) FROM measure_result").fetchone()[0]
        path = os.path.join(out_dir, f"{name}.parquet")
        con.execute(f"COPY measure_result TO {sql_string(path)} (FORMAT parquet)")
        con.execute(f"DROP TABLE {quote_ident('measure_result')}")
        results.append({"name": name, "rows": rows, "seconds": seconds, "file": path})
        if job.get("explain_dir"):
            # Apart from the timed run, so the profile's own cost is not counted.
            plan = con.execute(f"EXPLAIN ANALYZE {sql}").fetchall()
            with open(os.path.join(job["explain_dir"], f"{name}.duckdb.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(str(row[-1]) for row in plan))
        sys.stderr.write(f"duckdb: {name}: {rows} rows in {seconds:.3f}s\n")
    return {
        "duckdb_version": duckdb.__version__,
        "threads": threads,
        "setup_seconds": setup,
        "peak_rss_mb": peak_rss_mb(),
        "measures": results,
    }


if __name__ == "__main__":
    main(sys.argv[1:], run)

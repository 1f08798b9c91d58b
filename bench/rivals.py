"""The same question asked of polars and DuckDB, for `bench_compare.py`: per-source packet and byte sums of
the inbound records of a default-format (v2) capture, the ten heaviest sources, and the ten heaviest /24s
built from the per-source table. One thread each. Usage: rivals.py polars|duckdb PATH VPC_PREFIX

Neither tool validates records, tests the IPv4 syntax, walks a prefix hierarchy or fits a budget: they do
less than `floodgate analyze`, which is what makes them a fair floor to beat.
"""

from __future__ import annotations

import os
import sys

COLUMNS = [
    "version",
    "account_id",
    "interface_id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log_status",
]


def with_polars(path: str, vpc_prefix: str) -> None:
    os.environ["POLARS_MAX_THREADS"] = "1"
    import polars as pl  # noqa: PLC0415 - after the thread count is set

    capture = pl.scan_csv(
        path,
        separator=" ",
        has_header=False,
        new_columns=COLUMNS,
        schema_overrides={"srcaddr": pl.String, "dstaddr": pl.String, "packets": pl.Int64, "bytes": pl.Int64},
    )
    inbound = capture.filter((pl.col("log_status") == "OK") & pl.col("dstaddr").str.starts_with(vpc_prefix))
    per_source = inbound.group_by("srcaddr").agg(pl.col("packets").sum(), pl.col("bytes").sum()).collect()
    top = per_source.top_k(10, by="packets")
    per_24 = (
        per_source.group_by(pl.col("srcaddr").str.replace(r"\.\d+$", ".0/24").alias("prefix"))
        .agg(pl.col("packets").sum(), pl.len().alias("members"))
        .top_k(10, by="packets")
    )
    print(top.height, per_24.height, per_source.height)


def with_duckdb(path: str, vpc_prefix: str) -> None:
    import duckdb  # noqa: PLC0415 - one tool per process

    db = duckdb.connect()
    db.execute("SET threads = 1")
    columns = ", ".join(
        f"'{name}': '{'BIGINT' if name in ('packets', 'bytes') else 'VARCHAR'}'" for name in COLUMNS
    )
    db.execute(
        f"""CREATE TEMP TABLE per_source AS
        SELECT srcaddr, sum(packets) AS packets, sum(bytes) AS bytes
        FROM read_csv(?, delim = ' ', header = false, columns = {{{columns}}})
        WHERE log_status = 'OK' AND starts_with(dstaddr, ?)
        GROUP BY srcaddr""",  # noqa: S608 - column names are our own constants
        [path, vpc_prefix],
    )
    top = db.execute("SELECT * FROM per_source ORDER BY packets DESC LIMIT 10").fetchall()
    per_24 = db.execute(
        r"""SELECT regexp_replace(srcaddr, '\.\d+$', '.0/24') AS prefix, sum(packets), count(*)
        FROM per_source GROUP BY prefix ORDER BY 2 DESC LIMIT 10"""
    ).fetchall()
    print(len(top), len(per_24))


if __name__ == "__main__":
    tool, capture_path, prefix = sys.argv[1:4]
    {"polars": with_polars, "duckdb": with_duckdb}[tool](capture_path, prefix)

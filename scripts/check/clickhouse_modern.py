#!/usr/bin/env python3
"""Checks that Argus's ClickHouse schema, data and analyst queries also work on a
modern ClickHouse (chDB: ClickHouse 26.x in-process, PyPI `chdb-core`), not only on
Debian's 18.16 that the integration tests run against.

usage: clickhouse_modern.py SPEC.json
SPEC: {"ddl": [statements], "tables": {"events": "<TSV>", ...}, "queries": [sql, ...]}
The TSV comes from the 18.16 server, so the data round-trips across versions too.
Prints one line per check; exits non-zero on the first failure.
"""
import json
import sys

import chdb
from chdb import session


def main() -> int:
    spec = json.load(open(sys.argv[1]))
    s = session.Session()
    version = s.query("SELECT version()", "CSV").data().strip().strip('"')
    print(f"chDB ClickHouse {version}")
    s.query("CREATE DATABASE IF NOT EXISTS argus")
    s.query("USE argus")
    for stmt in spec["ddl"]:
        s.query(stmt)
        s.query(stmt)  # idempotent
    print(f"ddl: {len(spec['ddl'])} statements ran twice")
    for table, tsv in spec["tables"].items():
        # chDB takes data inline: VALUES would need quoting, so go through a file.
        path = f"/tmp/argus-chdb-{table}.tsv"
        with open(path, "w") as f:
            f.write(tsv)
        # The column types come from the insertion table.
        s.query(f"INSERT INTO {table} SELECT * FROM file('{path}', 'TabSeparated')")
    for table, tsv in spec["tables"].items():
        want = len([l for l in tsv.splitlines() if l])
        got = int(s.query(f"SELECT count() FROM {table} FINAL", "CSV").data().strip())
        if got != want:
            print(f"FAIL {table}: {got} rows after loading {want}")
            return 1
        print(f"{table}: {got} rows from 18.16 loaded")
    for q in spec["queries"]:
        out = s.query(q, "TSV").data()
        if not out.strip():
            print(f"FAIL no rows from:\n{q}")
            return 1
        print(f"query ok: {q.splitlines()[0][:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

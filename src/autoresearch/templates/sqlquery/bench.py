"""Read-only harness of the `sqlquery` task: build a shop database, check query.sql, time it.

The question query.sql answers (the spec; REFERENCE below is the same in plain SQL):

    For every country, the gold-tier customer who spent the most on shipped orders placed on
    days 400 to 579 (inclusive), counting only items of the categories 'books' and 'games'.
    One row per country: country, customer_id, name, spend_cents, orders, where spend_cents is
    the sum of quantity * unit_price_cents over those items and orders the number of distinct
    orders they came from. Ties go to the lower customer_id. Countries where no gold customer
    bought such an item have no row. Row order does not matter.

What happens, in order:
  1. A fresh SQLite database is generated in a temporary folder (customers, products, orders,
     order_items; about 400k rows). Its shape is fixed; its contents are drawn fresh every
     run (seeded from AUTORESEARCH_SEED and a per-run nonce), so no answer can be written
     into query.sql ahead of time.
  2. REFERENCE runs once on it: those are the expected rows.
  3. schema_extra.sql runs, under an authorizer that lets it create (and drop) indexes and run
     ANALYZE, nothing else: no tables, views, triggers, pragmas, attached files or row changes,
     so no precomputed answer can hide in the database.
  4. query.sql runs on a new read-only connection (mode=ro, query_only, an authorizer that
     allows reading and nothing more): once to check that its rows equal the expected rows
     (as a multiset, with types), then REPEATS more times, each checked. The median wall time
     is `query_ms` (lower is better). Index build time is reported as `index_ms`; it does not
     count, but the whole run must fit in the budget.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import os
import random
import resource
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPEATS = 7  # timed runs after the checking one; the median is the metric
N_CUSTOMERS = 20_000
N_PRODUCTS = 2_000
N_ORDERS = 100_000  # with 1 to 4 items each: about 250k order_items
N_DAYS = 730
COUNTRIES = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "IT", "ES", "CA", "NL", "SE",
             "PL", "MX", "KR", "AU", "CH", "BE", "AT", "NO", "DK", "FI", "PT", "IE"]
CATEGORIES = ["books", "games", "music", "garden", "kitchen", "toys", "tools", "sports", "beauty", "office"]
TIERS = {"bronze": 70, "silver": 25, "gold": 5}
STATUSES = {"shipped": 80, "cancelled": 10, "returned": 5, "pending": 5}
SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "su", "vo", "ne", "lin", "dar", "po", "sha", "gu", "fe", "ri", "an"]
CACHE_MIB = 64  # page cache of the timed connection: the whole database fits, so timings measure the plan
BUDGET_S = float(os.environ.get("AUTORESEARCH_BUDGET_S", "20"))  # the checking run plus the timed runs
SEED = int(os.environ.get("AUTORESEARCH_SEED", "0"))

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL,
                        tier TEXT NOT NULL, signup_day INTEGER NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
                       price_cents INTEGER NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, day INTEGER NOT NULL,
                     status TEXT NOT NULL);
CREATE TABLE order_items (order_id INTEGER NOT NULL, product_id INTEGER NOT NULL,
                          quantity INTEGER NOT NULL, unit_price_cents INTEGER NOT NULL);
"""

REFERENCE = """
WITH spend AS (
    SELECT o.customer_id,
           SUM(i.quantity * i.unit_price_cents) AS spend_cents,
           COUNT(DISTINCT o.id) AS orders
    FROM orders o
    JOIN order_items i ON i.order_id = o.id
    JOIN products p ON p.id = i.product_id
    JOIN customers c ON c.id = o.customer_id
    WHERE c.tier = 'gold' AND o.status = 'shipped' AND o.day BETWEEN 400 AND 579
      AND p.category IN ('books', 'games')
    GROUP BY o.customer_id
), ranked AS (
    SELECT c.country, c.id AS customer_id, c.name, s.spend_cents, s.orders,
           ROW_NUMBER() OVER (PARTITION BY c.country ORDER BY s.spend_cents DESC, c.id) AS rn
    FROM spend s JOIN customers c ON c.id = s.customer_id
)
SELECT country, customer_id, name, spend_cents, orders FROM ranked WHERE rn = 1
"""


# -- the database --------------------------------------------------------------------------------------

def build_database(path: Path, rng: random.Random) -> None:
    """Generate the shop. Skewed like real data: a few countries, products and customers dominate.
    (Random draws go through rng.random() and bisect: randint is too slow for 400k rows.)"""
    uniform = rng.random

    def pick(cum_weights: list[float]) -> int:  # an index drawn with these cumulative weights
        return bisect.bisect(cum_weights, uniform() * cum_weights[-1])

    def name() -> str:
        return "".join(SYLLABLES[int(uniform() * len(SYLLABLES))] for _ in range(2 + int(uniform() * 3))).title()

    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    country_weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(COUNTRIES))))
    tier_weights = list(itertools.accumulate(TIERS.values()))
    tiers = list(TIERS)
    db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
                   ((i, f"{name()} {name()}", COUNTRIES[pick(country_weights)], tiers[pick(tier_weights)],
                     int(uniform() * N_DAYS)) for i in range(1, N_CUSTOMERS + 1)))
    prices = [int(199 * 2 ** (6.6 * uniform())) for _ in range(N_PRODUCTS)]
    db.executemany("INSERT INTO products VALUES (?, ?, ?, ?)",
                   ((i + 1, name(), CATEGORIES[int(uniform() * len(CATEGORIES))], prices[i]) for i in range(N_PRODUCTS)))
    activity = list(itertools.accumulate(rng.paretovariate(1.5) for _ in range(N_CUSTOMERS)))
    status_weights = list(itertools.accumulate(STATUSES.values()))
    statuses = list(STATUSES)
    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                   ((i, 1 + pick(activity), int(uniform() * N_DAYS), statuses[pick(status_weights)])
                    for i in range(1, N_ORDERS + 1)))
    popularity = list(itertools.accumulate(1 / (rank + 1) ** 0.8 for rank in range(N_PRODUCTS)))

    def items():
        for order in range(1, N_ORDERS + 1):
            for _ in range(1 + int(uniform() * 4)):
                product = pick(popularity)
                price = prices[product]
                discount = price // 10 if uniform() < 0.25 else 0
                yield order, product + 1, 1 + int(uniform() * 5), price - discount

    db.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?)", items())
    db.commit()
    db.close()


# -- the authorizers -------------------------------------------------------------------------------------

INTERNAL_TABLES = ("sqlite_master", "sqlite_schema", "sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4")
INDEX_ACTIONS = {sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_REINDEX, sqlite3.SQLITE_ANALYZE,
                 sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_TRANSACTION}
BOOKKEEPING = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_CREATE_TABLE}
READ_ACTIONS = {sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}


class Refused:
    """An authorizer that records what it denied, so the error can say what and where."""

    def __init__(self, allowed: set[int], bookkeeping: bool) -> None:
        self.allowed, self.bookkeeping, self.denied = allowed, bookkeeping, []

    def __call__(self, action: int, arg1, arg2, dbname, source) -> int:
        if action in self.allowed:
            return sqlite3.SQLITE_OK
        if self.bookkeeping and action in BOOKKEEPING and arg1 in INTERNAL_TABLES:
            return sqlite3.SQLITE_OK  # what CREATE INDEX and ANALYZE write about themselves
        self.denied.append((action, arg1))
        return sqlite3.SQLITE_DENY


def apply_schema_extra(db: sqlite3.Connection, script: str) -> float:
    """Run schema_extra.sql under the index-only authorizer; returns milliseconds."""
    guard = Refused(INDEX_ACTIONS, bookkeeping=True)
    db.set_authorizer(guard)
    start = time.perf_counter()
    try:
        db.executescript(script)
    except sqlite3.Error as exc:
        if guard.denied:
            print("reject: not-an-index")
            sys.exit(f"bench: schema_extra.sql may only CREATE INDEX, DROP INDEX and ANALYZE ({exc}; "
                     f"refused action code {guard.denied[0][0]} on {guard.denied[0][1]!r})")
        sys.exit(f"bench: schema_extra.sql failed: {exc}")
    finally:
        db.set_authorizer(None)
    return 1000 * (time.perf_counter() - start)


def dry_run(query: str, schema_extra: str) -> None:
    """Both editable files on an empty copy of the schema, to fail in milliseconds, not seconds."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(SCHEMA)
    apply_schema_extra(db, schema_extra)
    db.set_authorizer(Refused(READ_ACTIONS, bookkeeping=False))
    deadline = time.perf_counter() + BUDGET_S
    db.set_progress_handler(lambda: int(time.perf_counter() > deadline), 10_000)
    run_query(db, query)
    db.close()


def read_only(path: Path, deadline: float) -> sqlite3.Connection:
    """The timed connection: read-only file, fixed cache, reads only, stopped at the deadline."""
    db = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
    db.execute(f"PRAGMA cache_size = -{CACHE_MIB * 1024}")
    db.execute("PRAGMA temp_store = MEMORY")
    db.execute("PRAGMA query_only = ON")
    db.set_authorizer(Refused(READ_ACTIONS, bookkeeping=False))
    db.set_progress_handler(lambda: int(time.perf_counter() > deadline), 10_000)
    return db


# -- checking and timing ---------------------------------------------------------------------------------

def typed(rows: list[tuple]) -> collections.Counter:
    """Rows as a multiset that also compares types: 5 and 5.0 are different answers."""
    return collections.Counter(tuple((type(v).__name__, v) for v in row) for row in rows)


def compare(got: list[tuple], expected: list[tuple]) -> None:
    missing, extra = typed(expected) - typed(got), typed(got) - typed(expected)
    if missing or extra:
        def show(rows):
            return "; ".join(str(tuple(v for _, v in row)) for row in list(rows)[:3]) or "none"
        sys.exit(f"bench: query.sql returned {len(got)} rows, expected {len(expected)}; "
                 f"{sum(missing.values())} expected rows missing (e.g. {show(missing)}), "
                 f"{sum(extra.values())} unexpected rows (e.g. {show(extra)})")


def run_query(db: sqlite3.Connection, sql: str) -> tuple[list[tuple], float]:
    start = time.perf_counter()
    try:
        rows = db.execute(sql).fetchall()
    except sqlite3.Error as exc:
        if "interrupted" in str(exc):
            sys.exit(f"bench: query.sql did not finish within the budget of {BUDGET_S:g}s")
        if "not authorized" in str(exc):
            print("reject: not-read-only")
            sys.exit(f"bench: query.sql may only read (a single SELECT or WITH ... SELECT): {exc}")
        sys.exit(f"bench: query.sql failed: {exc}")
    return rows, 1000 * (time.perf_counter() - start)


def main() -> None:
    query = Path("query.sql").read_text(encoding="utf-8")
    schema_extra = Path("schema_extra.sql").read_text(encoding="utf-8") if Path("schema_extra.sql").exists() else ""
    dry_run(query, schema_extra)
    nonce = secrets.randbits(64)
    out = os.environ.get("AUTORESEARCH_OUT") or None
    with tempfile.TemporaryDirectory(prefix="sqlquery-", dir=out) as tmp:
        path = Path(tmp).resolve() / "shop.db"
        start = time.perf_counter()
        build_database(path, random.Random(f"{SEED}:{nonce}"))
        print(f"database = seed {SEED}, nonce {nonce:016x}, {path.stat().st_size >> 20} MiB, "
              f"built in {time.perf_counter() - start:.1f}s")

        reference = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
        expected = reference.execute(REFERENCE).fetchall()
        reference.close()

        writer = sqlite3.connect(path, isolation_level=None)
        index_ms = apply_schema_extra(writer, schema_extra)
        writer.close()
        db = read_only(path, deadline=time.perf_counter() + BUDGET_S)
        rows, first_ms = run_query(db, query)
        compare(rows, expected)
        print(f"check: passed, {len(expected)} rows")
        times = []
        for _ in range(REPEATS):
            rows, ms = run_query(db, query)
            compare(rows, expected)
            times.append(ms)
        db.close()

    print("times_ms = " + " ".join(f"{t:.2f}" for t in times))
    print(f"first_ms: {first_ms:.3f}")
    print(f"index_ms: {index_ms:.1f}")
    print(f"peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")
    print(f"query_ms: {statistics.median(times):.3f}")


if __name__ == "__main__":
    main()

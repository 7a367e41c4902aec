"""The sample rows every end-to-end judge seeds and asserts on (standard library only).

`customers` (10 rows) is the shop database: SQLite, and the extra PostgreSQL and
MariaDB databases of the adapter tests. `accounts` (5 rows) is the crm database
the hub runs attach on PostgreSQL.

    python3 sample_data.py customers|accounts     prints the seeding SQL
    python3 sample_data.py json                   prints the rows as JSON (for the TypeScript client)
"""

from __future__ import annotations

import json
import sys

CUSTOMERS = [
    (1, "Anna", "DE"),
    (2, "Bruno", "DE"),
    (3, "Chloe", "FR"),
    (4, "Dieter", "DE"),
    (5, "Emma", "US"),
    (6, "Farid", "FR"),
    (7, "Greta", "DE"),
    (8, "Hugo", "US"),
    (9, "Ilse", "DE"),
    (10, "Jules", "FR"),
]
ACCOUNTS = [
    (1, "Acme GmbH", "gold", 1200),
    (2, "Bolt SA", "silver", 300),
    (3, "Cargo BV", "gold", 80),
    (4, "Delta AG", "gold", 450),
    (5, "Echo Ltd", "bronze", 20),
]


def customers_sql() -> str:
    """CREATE and INSERTs for `customers`, portable across SQLite, PostgreSQL and MariaDB."""
    rows = "".join(f"INSERT INTO customers (id, name, country) VALUES ({i}, '{n}', '{c}');\n" for i, n, c in CUSTOMERS)
    return "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(100), country VARCHAR(2));\n" + rows


def accounts_sql() -> str:
    """CREATE and INSERTs for `accounts` (PostgreSQL)."""
    rows = "".join(f"INSERT INTO accounts VALUES ({i}, '{n}', '{t}', {m});\n" for i, n, t, m in ACCOUNTS)
    return "CREATE TABLE accounts (id integer PRIMARY KEY, name text NOT NULL, tier text, mrr integer);\n" + rows


if __name__ == "__main__":
    tables = {
        "customers": customers_sql,
        "accounts": accounts_sql,
        "json": lambda: json.dumps({"customers": CUSTOMERS, "accounts": ACCOUNTS}) + "\n",
    }
    if len(sys.argv) != 2 or sys.argv[1] not in tables:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(tables)}")
    print(tables[sys.argv[1]](), end="")

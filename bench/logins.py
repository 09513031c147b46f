"""Users and bearer tokens written directly (argon2 hashing is not what a bench measures)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from bench.databases import BenchDatabase, query, sqlite_ts


def add_login(db: BenchDatabase, username: str, role: str, org_unit: str | None) -> str:
    """A user and a live bearer token, written directly like tests/api/conftest.py add_login
    (argon2 hashing has nothing to do with what is measured). Returns the token."""
    token = secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    user = (username, "$argon2id$bench-user-never-logs-in", role, org_unit, True, now)
    tok = (hashlib.sha256(token.encode()).hexdigest(), now, now + timedelta(hours=12))
    if db.engine == "sqlite":
        conn = db.sqlite()
        try:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                "INSERT INTO users (username, password_hash, role, org_unit_code, active, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (*user[:4], 1, sqlite_ts(now)),
            )
            conn.execute(
                "INSERT INTO auth_tokens (token_hash, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                (tok[0], cur.lastrowid, sqlite_ts(tok[1]), sqlite_ts(tok[2])),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
    else:
        with db.pg() as conn:
            user_id = conn.execute(
                "INSERT INTO users (username, password_hash, role, org_unit_code, active, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                user,
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO auth_tokens (token_hash, user_id, issued_at, expires_at) VALUES (%s, %s, %s, %s)",
                (tok[0], user_id, tok[1], tok[2]),
            )
    return token


def user_id(db: BenchDatabase, username: str) -> int:
    return query(db, "SELECT id FROM users WHERE username = %s", (username,))[0][0]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

//! [`AuthStore`] on SQLite: one connection behind a mutex, tables created on
//! open. Its calls block; async code reaches them through `spawn_blocking`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::account::Role;
use crate::api_token::Scope;
use crate::audit::{AuthEvent, AuthEventKind};
use crate::store::{ApiTokenRecord, AuthStore, NewUser, SessionRecord, StoreError, UserRecord};
use crate::token::TokenHash;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS auth_users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_sessions (
    token_hash BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_sessions_user ON auth_sessions(user_id);
CREATE TABLE IF NOT EXISTS auth_api_tokens (
    id INTEGER PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_used_ms INTEGER
);
CREATE TABLE IF NOT EXISTS auth_audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    username TEXT,
    addr TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_audit_kind ON auth_audit(kind, id);
";

/// Whether account `?1` is the only admin.
const LAST_ADMIN: &str = "SELECT EXISTS (SELECT 1 FROM auth_users WHERE id = ?1 AND role = 'admin')
    AND (SELECT COUNT(*) FROM auth_users WHERE role = 'admin') = 1";

const USER_COLUMNS: &str = "id, username, role, password_hash, created_ms";
const TOKEN_COLUMNS: &str = "id, token_hash, user_id, name, scope, created_ms, last_used_ms";

/// The SQLite auth store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and its tables.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }
}

fn blob_hash(bytes: Vec<u8>) -> Result<TokenHash, StoreError> {
    let len = bytes.len();
    <[u8; 32]>::try_from(bytes)
        .map(TokenHash)
        .map_err(|_| StoreError::Corrupt {
            column: "token_hash",
            value: format!("{len} bytes"),
        })
}

// Row readers return rusqlite errors; bad enum text is reported after the query.
fn user_row(row: &Row<'_>) -> rusqlite::Result<(UserRecord, String)> {
    let role: String = row.get(2)?;
    Ok((
        UserRecord {
            id: row.get(0)?,
            username: row.get(1)?,
            role: Role::Viewer,
            password_hash: row.get(3)?,
            created_ms: row.get(4)?,
        },
        role,
    ))
}

fn finish_user((mut user, role): (UserRecord, String)) -> Result<UserRecord, StoreError> {
    user.role = role.parse().map_err(|_| StoreError::Corrupt {
        column: "auth_users.role",
        value: role,
    })?;
    Ok(user)
}

type TokenRow = (i64, Vec<u8>, i64, String, String, i64, Option<i64>);

fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn finish_token(
    (id, hash, user_id, name, scope, created_ms, last_used_ms): TokenRow,
) -> Result<ApiTokenRecord, StoreError> {
    Ok(ApiTokenRecord {
        id,
        token_hash: blob_hash(hash)?,
        user_id,
        name,
        scope: scope.parse().map_err(|value| StoreError::Corrupt {
            column: "auth_api_tokens.scope",
            value,
        })?,
        created_ms,
        last_used_ms,
    })
}

fn insert_user(conn: &Connection, user: &NewUser<'_>) -> Result<i64, StoreError> {
    let result = conn.execute(
        "INSERT INTO auth_users (username, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![user.username, user.role.as_str(), user.password_hash, user.created_ms],
    );
    match result {
        Ok(_) => Ok(conn.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Duplicate {
                what: format!("user {:?}", user.username),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// [`StoreError::LastAdmin`] if account `id` is the only admin. Call it in the write
/// transaction (IMMEDIATE: other writers wait) that would demote or delete it.
fn keep_an_admin(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let last: bool = conn.query_row(LAST_ADMIN, [id], |r| r.get(0))?;
    if last {
        Err(StoreError::LastAdmin)
    } else {
        Ok(())
    }
}

fn changed(n: usize, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if n == 0 {
        Err(StoreError::NotFound { what: what() })
    } else {
        Ok(())
    }
}

impl AuthStore for SqliteStore {
    fn create_user(&self, user: &NewUser<'_>) -> Result<i64, StoreError> {
        insert_user(&*self.conn()?, user)
    }

    fn create_first_admin(&self, user: &NewUser<'_>) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let admins: i64 = tx.query_row(
            "SELECT COUNT(*) FROM auth_users WHERE role = 'admin'",
            [],
            |r| r.get(0),
        )?;
        if admins > 0 {
            return Err(StoreError::AdminExists);
        }
        let id = insert_user(&tx, user)?;
        tx.commit()?;
        Ok(id)
    }

    fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.conn()?
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM auth_users WHERE username = ?1"),
                [username],
                user_row,
            )
            .optional()?
            .map(finish_user)
            .transpose()
    }

    fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        self.conn()?
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM auth_users WHERE id = ?1"),
                [id],
                user_row,
            )
            .optional()?
            .map(finish_user)
            .transpose()
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {USER_COLUMNS} FROM auth_users ORDER BY username"
        ))?;
        let rows = stmt.query_map([], user_row)?;
        rows.map(|r| finish_user(r?)).collect()
    }

    fn count_admins(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn()?.query_row(
            "SELECT COUNT(*) FROM auth_users WHERE role = 'admin'",
            [],
            |r| r.get(0),
        )?;
        Ok(n.max(0).unsigned_abs())
    }

    fn set_role(&self, id: i64, role: Role) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if role != Role::Admin {
            keep_an_admin(&tx, id)?;
        }
        let n = tx.execute(
            "UPDATE auth_users SET role = ?2 WHERE id = ?1",
            params![id, role.as_str()],
        )?;
        tx.commit()?;
        changed(n, || format!("user id {id}"))
    }

    fn set_password_hash(&self, id: i64, password_hash: &str) -> Result<(), StoreError> {
        let n = self.conn()?.execute(
            "UPDATE auth_users SET password_hash = ?2 WHERE id = ?1",
            params![id, password_hash],
        )?;
        changed(n, || format!("user id {id}"))
    }

    fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        keep_an_admin(&tx, id)?;
        let n = tx.execute("DELETE FROM auth_users WHERE id = ?1", [id])?;
        tx.commit()?;
        changed(n, || format!("user id {id}"))
    }

    fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO auth_sessions (token_hash, user_id, created_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4)",
            params![&s.token_hash.0[..], s.user_id, s.created_ms, s.last_seen_ms],
        )?;
        Ok(())
    }

    fn session(&self, token_hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        let row = self
            .conn()?
            .query_row(
                "SELECT user_id, created_ms, last_seen_ms FROM auth_sessions WHERE token_hash = ?1",
                [&token_hash.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(
            row.map(|(user_id, created_ms, last_seen_ms)| SessionRecord {
                token_hash: *token_hash,
                user_id,
                created_ms,
                last_seen_ms,
            }),
        )
    }

    fn touch_session(&self, token_hash: &TokenHash, last_seen_ms: i64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE auth_sessions SET last_seen_ms = ?2 WHERE token_hash = ?1",
            params![&token_hash.0[..], last_seen_ms],
        )?;
        Ok(())
    }

    fn delete_session(&self, token_hash: &TokenHash) -> Result<(), StoreError> {
        self.conn()?.execute(
            "DELETE FROM auth_sessions WHERE token_hash = ?1",
            [&token_hash.0[..]],
        )?;
        Ok(())
    }

    fn delete_user_sessions(&self, user_id: i64) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM auth_sessions WHERE user_id = ?1", [user_id])?;
        Ok(())
    }

    fn purge_sessions(
        &self,
        idle_before_ms: i64,
        created_before_ms: i64,
    ) -> Result<u64, StoreError> {
        let n = self.conn()?.execute(
            "DELETE FROM auth_sessions WHERE last_seen_ms <= ?1 OR created_ms <= ?2",
            params![idle_before_ms, created_before_ms],
        )?;
        Ok(n as u64)
    }

    fn insert_api_token(
        &self,
        token_hash: &TokenHash,
        user_id: i64,
        name: &str,
        scope: Scope,
        created_ms: i64,
    ) -> Result<i64, StoreError> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO auth_api_tokens (token_hash, user_id, name, scope, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![&token_hash.0[..], user_id, name, scope.as_str(), created_ms],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn api_token(&self, token_hash: &TokenHash) -> Result<Option<ApiTokenRecord>, StoreError> {
        self.conn()?
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM auth_api_tokens WHERE token_hash = ?1"),
                [&token_hash.0[..]],
                token_row,
            )
            .optional()?
            .map(finish_token)
            .transpose()
    }

    fn touch_api_token(&self, id: i64, last_used_ms: i64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE auth_api_tokens SET last_used_ms = ?2 WHERE id = ?1",
            params![id, last_used_ms],
        )?;
        Ok(())
    }

    fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM auth_api_tokens WHERE user_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([user_id], token_row)?;
        rows.map(|r| finish_token(r?)).collect()
    }

    fn delete_api_token(&self, user_id: i64, id: i64) -> Result<bool, StoreError> {
        let n = self.conn()?.execute(
            "DELETE FROM auth_api_tokens WHERE id = ?1 AND user_id = ?2",
            params![id, user_id],
        )?;
        Ok(n > 0)
    }

    fn append_audit(&self, e: &AuthEvent) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO auth_audit (at_ms, kind, username, addr, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.at_ms, e.kind.as_str(), e.username, e.addr, e.detail],
        )?;
        Ok(())
    }

    fn purge_audit(&self, before_ms: i64, max_rows: u64) -> Result<u64, StoreError> {
        let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let n = self.conn()?.execute(
            "DELETE FROM auth_audit WHERE at_ms < ?1 \
             OR id <= (SELECT id FROM auth_audit ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            [before_ms, max_rows],
        )?;
        Ok(n as u64)
    }

    fn recent_audit(
        &self,
        kind: Option<AuthEventKind>,
        limit: u32,
    ) -> Result<Vec<AuthEvent>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT at_ms, kind, username, addr, detail FROM auth_audit
             WHERE ?1 IS NULL OR kind = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![kind.map(|k| k.as_str()), limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })?;
        rows.map(|r| {
            let (at_ms, kind, username, addr, detail) = r?;
            Ok(AuthEvent {
                at_ms,
                kind: kind.parse().map_err(|value| StoreError::Corrupt {
                    column: "auth_audit.kind",
                    value,
                })?,
                username,
                addr,
                detail,
            })
        })
        .collect()
    }
}

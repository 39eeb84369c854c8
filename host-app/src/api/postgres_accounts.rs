//! The panel's accounts in PostgreSQL: web's [`AuthStore`] on the database of a PostgreSQL
//! history, in tables of its own (`auth_*`), so every host instance on that database has
//! the same users, roles, sessions, API tokens and auth audit.
//!
//! Tables are created at open under an advisory lock (instances starting at once never
//! race on DDL), as the history does. The client is the blocking `postgres` crate: web
//! calls the store from its blocking pool only ([`web::Auth::blocking`]), never from a
//! runtime worker.

use postgres::error::SqlState;
use postgres::{Client, Row};
use web::store::{ApiTokenRecord, AuthStore, NewUser, SessionRecord, StoreError, UserRecord};
use web::token::TokenHash;
use web::{AuthEvent, AuthEventKind, Role, Scope};

use crate::history::PostgresOptions;
use crate::pg::{self, Pool};

/// This layout; a database written by a newer one is refused.
const VERSION: i32 = 1;

/// Advisory lock keys ("SPBH" + a number, after the history's): table creation, and
/// every check-then-write of who is admin (the first admin, the last one), so instances
/// never make two first admins nor remove the last one between them.
const SCHEMA_LOCK: i64 = 0x5350_4248_0000_0003;
const ADMINS_LOCK: i64 = 0x5350_4248_0000_0004;

/// Whether account `$1` is the only admin.
const LAST_ADMIN: &str = "SELECT EXISTS (SELECT 1 FROM auth_users WHERE id = $1 AND role = 'admin') \
    AND (SELECT count(*) FROM auth_users WHERE role = 'admin') = 1";

/// Idle connections kept for reuse; more are opened while requests overlap.
const MAX_IDLE: usize = 4;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS auth_schema (
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE,
    role text NOT NULL,
    password_hash text NOT NULL,
    created_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_sessions (
    token_hash bytea PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
    created_ms bigint NOT NULL,
    last_seen_ms bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_sessions_user ON auth_sessions (user_id);
CREATE TABLE IF NOT EXISTS auth_api_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    user_id bigint NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
    name text NOT NULL,
    scope text NOT NULL,
    created_ms bigint NOT NULL,
    last_used_ms bigint
);
CREATE INDEX IF NOT EXISTS auth_api_tokens_user ON auth_api_tokens (user_id);
CREATE TABLE IF NOT EXISTS auth_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms bigint NOT NULL,
    kind text NOT NULL,
    username text,
    addr text,
    detail text NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_audit_kind ON auth_audit (kind, id);
CREATE INDEX IF NOT EXISTS auth_audit_at ON auth_audit (at_ms);
";

const USER_COLUMNS: &str = "id, username, role, password_hash, created_ms";
const TOKEN_COLUMNS: &str = "id, token_hash, user_id, name, scope, created_ms, last_used_ms";

/// Why the accounts cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("accounts in PostgreSQL {url}: {source}")]
    Sql {
        url: String,
        source: postgres::Error,
    },
    #[error(
        "accounts in PostgreSQL {url}: written by a newer layout ({found}; this build reads {VERSION})"
    )]
    Newer { url: String, found: i32 },
    #[error("accounts in PostgreSQL {url}: TLS: {source}")]
    Tls {
        url: String,
        source: infra::tls::TlsError,
    },
}

/// [`AuthStore`] on PostgreSQL; `Send + Sync`, share it (`Arc`).
pub struct PostgresAuthStore {
    pool: Pool,
}

impl PostgresAuthStore {
    /// Connects with the history's settings and creates the tables if they are not there
    /// (safe when several instances start at once).
    pub fn open(options: &PostgresOptions) -> Result<PostgresAuthStore, OpenError> {
        let sql = |source| OpenError::Sql {
            url: options.url.clone(),
            source,
        };
        let config =
            pg::client_config(&options.url, options.password.as_ref(), "host-app accounts")
                .map_err(sql)?;
        let mut pool = Pool::new(config, MAX_IDLE, "accounts-pg-close");
        if let Some(tls) = &options.tls {
            pool = pool.with_tls(tls).map_err(|source| OpenError::Tls {
                url: options.url.clone(),
                source,
            })?;
        }
        let found = pool.with(prepare).map_err(sql)?;
        if found > VERSION {
            return Err(OpenError::Newer {
                url: options.url.clone(),
                found,
            });
        }
        Ok(PostgresAuthStore { pool })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.pool.with(f).map_err(backend)
    }

    /// Runs `write` (a demotion or deletion of account `id`) in a transaction under the
    /// admins' lock, unless `id` is the only admin ([`StoreError::LastAdmin`]).
    fn keeping_an_admin<T>(
        &self,
        id: i64,
        write: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADMINS_LOCK])?;
            if tx.query_one(LAST_ADMIN, &[&id])?.get(0) {
                return Ok(Err(StoreError::LastAdmin));
            }
            let done = write(&mut tx)?;
            tx.commit()?;
            Ok(Ok(done))
        })?
    }
}

/// Creates the tables if absent; returns the layout version the database has.
fn prepare(client: &mut Client) -> Result<i32, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    tx.batch_execute(TABLES)?;
    let version = match tx.query_opt(
        "SELECT max(version) FROM auth_schema HAVING count(*) > 0",
        &[],
    )? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO auth_schema (version) VALUES ($1)", &[&VERSION])?;
            VERSION
        }
    };
    tx.commit()?;
    Ok(version)
}

fn backend(e: postgres::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn corrupt(column: &'static str, value: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        column,
        value: value.into(),
    }
}

fn hash_of(bytes: Vec<u8>) -> Result<TokenHash, StoreError> {
    let len = bytes.len();
    <[u8; 32]>::try_from(bytes)
        .map(TokenHash)
        .map_err(|_| corrupt("token_hash", format!("{len} bytes")))
}

fn user(row: &Row) -> Result<UserRecord, StoreError> {
    let role: String = row.get(2);
    Ok(UserRecord {
        id: row.get(0),
        username: row.get(1),
        role: role
            .parse::<Role>()
            .map_err(|_| corrupt("auth_users.role", role))?,
        password_hash: row.get(3),
        created_ms: row.get(4),
    })
}

fn api_token(row: &Row) -> Result<ApiTokenRecord, StoreError> {
    let scope: String = row.get(4);
    Ok(ApiTokenRecord {
        id: row.get(0),
        token_hash: hash_of(row.get(1))?,
        user_id: row.get(2),
        name: row.get(3),
        scope: scope
            .parse::<Scope>()
            .map_err(|value| corrupt("auth_api_tokens.scope", value))?,
        created_ms: row.get(5),
        last_used_ms: row.get(6),
    })
}

fn insert_user(
    client: &mut impl postgres::GenericClient,
    u: &NewUser<'_>,
) -> Result<i64, StoreError> {
    let inserted = client.query_one(
        "INSERT INTO auth_users (username, role, password_hash, created_ms) \
         VALUES ($1, $2, $3, $4) RETURNING id",
        &[
            &u.username,
            &u.role.as_str(),
            &u.password_hash,
            &u.created_ms,
        ],
    );
    match inserted {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(StoreError::Duplicate {
            what: format!("user {:?}", u.username),
        }),
        Err(e) => Err(backend(e)),
    }
}

fn changed(n: u64, id: i64) -> Result<(), StoreError> {
    if n == 0 {
        Err(StoreError::NotFound {
            what: format!("user id {id}"),
        })
    } else {
        Ok(())
    }
}

impl AuthStore for PostgresAuthStore {
    fn create_user(&self, user: &NewUser<'_>) -> Result<i64, StoreError> {
        self.pool
            .with(|c| Ok(insert_user(c, user)))
            .map_err(backend)?
    }

    fn create_first_admin(&self, user: &NewUser<'_>) -> Result<i64, StoreError> {
        self.pool
            .with(|c| {
                // Every instance takes the same lock, so only one first admin is ever made.
                let mut tx = c.transaction()?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADMINS_LOCK])?;
                let admins: i64 = tx
                    .query_one("SELECT count(*) FROM auth_users WHERE role = 'admin'", &[])?
                    .get(0);
                if admins > 0 {
                    return Ok(Err(StoreError::AdminExists));
                }
                let id = match insert_user(&mut tx, user) {
                    Ok(id) => id,
                    Err(e) => return Ok(Err(e)),
                };
                tx.commit()?;
                Ok(Ok(id))
            })
            .map_err(backend)?
    }

    fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {USER_COLUMNS} FROM auth_users WHERE username = $1"),
                &[&username],
            )
        })?
        .as_ref()
        .map(user)
        .transpose()
    }

    fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {USER_COLUMNS} FROM auth_users WHERE id = $1"),
                &[&id],
            )
        })?
        .as_ref()
        .map(user)
        .transpose()
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with(|c| {
            c.query(
                &format!("SELECT {USER_COLUMNS} FROM auth_users ORDER BY username COLLATE \"C\""),
                &[],
            )
        })?
        .iter()
        .map(user)
        .collect()
    }

    fn count_admins(&self) -> Result<u64, StoreError> {
        let n: i64 = self.with(|c| {
            c.query_one("SELECT count(*) FROM auth_users WHERE role = 'admin'", &[])
                .map(|r| r.get(0))
        })?;
        Ok(n.max(0).unsigned_abs())
    }

    fn set_role(&self, id: i64, role: Role) -> Result<(), StoreError> {
        let update = "UPDATE auth_users SET role = $2 WHERE id = $1";
        let n = if role == Role::Admin {
            self.with(|c| c.execute(update, &[&id, &role.as_str()]))?
        } else {
            self.keeping_an_admin(id, |tx| tx.execute(update, &[&id, &role.as_str()]))?
        };
        changed(n, id)
    }

    fn set_password_hash(&self, id: i64, password_hash: &str) -> Result<(), StoreError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE auth_users SET password_hash = $2 WHERE id = $1",
                &[&id, &password_hash],
            )
        })?;
        changed(n, id)
    }

    fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        let n = self.keeping_an_admin(id, |tx| {
            tx.execute("DELETE FROM auth_users WHERE id = $1", &[&id])
        })?;
        changed(n, id)
    }

    fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO auth_sessions (token_hash, user_id, created_ms, last_seen_ms) \
                 VALUES ($1, $2, $3, $4)",
                &[
                    &&s.token_hash.0[..],
                    &s.user_id,
                    &s.created_ms,
                    &s.last_seen_ms,
                ],
            )
        })?;
        Ok(())
    }

    fn session(&self, token_hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT user_id, created_ms, last_seen_ms FROM auth_sessions WHERE token_hash = $1",
                &[&&token_hash.0[..]],
            )
        })?;
        Ok(row.map(|r| SessionRecord {
            token_hash: *token_hash,
            user_id: r.get(0),
            created_ms: r.get(1),
            last_seen_ms: r.get(2),
        }))
    }

    fn touch_session(&self, token_hash: &TokenHash, last_seen_ms: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE auth_sessions SET last_seen_ms = $2 WHERE token_hash = $1",
                &[&&token_hash.0[..], &last_seen_ms],
            )
        })?;
        Ok(())
    }

    fn delete_session(&self, token_hash: &TokenHash) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM auth_sessions WHERE token_hash = $1",
                &[&&token_hash.0[..]],
            )
        })?;
        Ok(())
    }

    fn delete_user_sessions(&self, user_id: i64) -> Result<(), StoreError> {
        self.with(|c| c.execute("DELETE FROM auth_sessions WHERE user_id = $1", &[&user_id]))?;
        Ok(())
    }

    fn purge_sessions(
        &self,
        idle_before_ms: i64,
        created_before_ms: i64,
    ) -> Result<u64, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM auth_sessions WHERE last_seen_ms <= $1 OR created_ms <= $2",
                &[&idle_before_ms, &created_before_ms],
            )
        })
    }

    fn insert_api_token(
        &self,
        token_hash: &TokenHash,
        user_id: i64,
        name: &str,
        scope: Scope,
        created_ms: i64,
    ) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_one(
                "INSERT INTO auth_api_tokens (token_hash, user_id, name, scope, created_ms) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &&token_hash.0[..],
                    &user_id,
                    &name,
                    &scope.as_str(),
                    &created_ms,
                ],
            )
            .map(|r| r.get(0))
        })
    }

    fn api_token(&self, token_hash: &TokenHash) -> Result<Option<ApiTokenRecord>, StoreError> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM auth_api_tokens WHERE token_hash = $1"),
                &[&&token_hash.0[..]],
            )
        })?
        .as_ref()
        .map(api_token)
        .transpose()
    }

    fn touch_api_token(&self, id: i64, last_used_ms: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE auth_api_tokens SET last_used_ms = $2 WHERE id = $1",
                &[&id, &last_used_ms],
            )
        })?;
        Ok(())
    }

    fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM auth_api_tokens WHERE user_id = $1 ORDER BY id"
                ),
                &[&user_id],
            )
        })?
        .iter()
        .map(api_token)
        .collect()
    }

    fn delete_api_token(&self, user_id: i64, id: i64) -> Result<bool, StoreError> {
        let n = self.with(|c| {
            c.execute(
                "DELETE FROM auth_api_tokens WHERE id = $1 AND user_id = $2",
                &[&id, &user_id],
            )
        })?;
        Ok(n > 0)
    }

    fn append_audit(&self, e: &AuthEvent) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO auth_audit (at_ms, kind, username, addr, detail) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&e.at_ms, &e.kind.as_str(), &e.username, &e.addr, &e.detail],
            )
        })?;
        Ok(())
    }

    fn purge_audit(&self, before_ms: i64, max_rows: u64) -> Result<u64, StoreError> {
        let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
        self.with(|c| {
            c.execute(
                "DELETE FROM auth_audit WHERE at_ms < $1 \
                 OR id <= (SELECT id FROM auth_audit ORDER BY id DESC LIMIT 1 OFFSET $2)",
                &[&before_ms, &max_rows],
            )
        })
    }

    fn recent_audit(
        &self,
        kind: Option<AuthEventKind>,
        limit: u32,
    ) -> Result<Vec<AuthEvent>, StoreError> {
        let kind = kind.map(|k| k.as_str());
        let rows = self.with(|c| {
            c.query(
                "SELECT at_ms, kind, username, addr, detail FROM auth_audit \
                 WHERE $1::text IS NULL OR kind = $1 ORDER BY id DESC LIMIT $2",
                &[&kind, &i64::from(limit)],
            )
        })?;
        rows.iter()
            .map(|r| {
                let kind: String = r.get(1);
                Ok(AuthEvent {
                    at_ms: r.get(0),
                    kind: kind
                        .parse()
                        .map_err(|value: String| corrupt("auth_audit.kind", value))?,
                    username: r.get(2),
                    addr: r.get(3),
                    detail: r.get(4),
                })
            })
            .collect()
    }
}

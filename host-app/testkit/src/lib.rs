//! What host-app's integration tests share that needs host-app's own types; everything
//! that does not (brokers, recorders, waits, config builders, processes) is in
//! `system-tests`.
//!
//! - [`host`]: a host on its embedded broker and a real SQLite file, a born edge node;
//! - [`broker`]: an embedded broker configuration and a started broker;
//! - [`history`]: a history store on a temporary file and sample builders;
//! - [`postgres`]: a throw-away PostgreSQL server on loopback;
//! - [`backend_suite!`]: one generic test per backend (SQLite, PostgreSQL).

pub mod broker;
pub mod history;
pub mod host;
pub mod postgres;

/// Each named generic test once per backend: `sqlite::name` runs `name::<Sqlite>()` and
/// `postgres::name` runs `name::<Postgres>()`, both types of the calling test file.
#[macro_export]
macro_rules! backend_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name::<super::Sqlite>(); } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name::<super::Postgres>(); } )*
        }
    };
}

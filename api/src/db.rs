//! SQL metadata store: one schema, migrations run at start-up, SQLite by default and
//! PostgreSQL in production, through sqlx's `Any` driver so every query is written once.

use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use crate::metrics::time_db;
use crate::{Error, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which SQL server is behind the pool (the few statements that differ branch on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (single server process; writers serialise).
    Sqlite,
    /// PostgreSQL (several servers and workers).
    Postgres,
}

/// Connection pool plus backend.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connect (creating the SQLite file and its folder if needed) and run migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::Config(format!(
                "DATABASE_URL must be sqlite:// or postgres:// (got {})",
                redact(url)
            )));
        };
        if backend == Backend::Sqlite
            && let Some(path) = url
                .strip_prefix("sqlite://")
                .map(|p| p.split('?').next().unwrap_or(p))
            && let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let max = if backend == Backend::Sqlite { 4 } else { 10 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Concurrent readers while the worker writes; wait instead of failing
                        // when another connection holds the write lock.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 15000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Db { pool, backend })
    }

    /// The connection pool (sqlx `Any`: queries use `$n` placeholders on both backends).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begin a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`, waiting up to the busy timeout for it): a deferred transaction that
    /// reads first cannot upgrade to a writer while another writer committed meanwhile and
    /// fails with "database is locked". PostgreSQL needs nothing special.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let begin = async {
            match self.backend {
                Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
                Backend::Postgres => self.pool.begin().await,
            }
        };
        Ok(time_db("begin_write", begin).await?)
    }

    /// Which server the pool talks to (for the few statements that differ).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Health probe: a round trip to the server.
    pub async fn check(&self) -> Result<()> {
        let one: i64 =
            time_db("ping", sqlx::query_scalar("SELECT 1").fetch_one(&self.pool)).await?;
        if one != 1 {
            return Err(Error::Internal("database returned a wrong answer".into()));
        }
        Ok(())
    }

    /// Close the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Commit a transaction, timed as `commit`.
pub async fn commit(tx: sqlx::Transaction<'static, sqlx::Any>) -> Result<()> {
    Ok(time_db("commit", tx.commit()).await?)
}

/// A URL with its password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://app:hunter2@db:5432/edgeml"),
            "postgres://app:***@db:5432/edgeml"
        );
        assert_eq!(super::redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}

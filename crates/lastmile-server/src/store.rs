//! The one place the server opens its journal store: the configured
//! backend resolved to an implementation of
//! [`lastmile_store::JournalStore`]. A second backend is a new variant of
//! [`JournalBackend`] and one more arm here.

use std::time::Duration;

use lastmile_store::{ApplyPolicy, JournalStore, PgOptions, PostgresStore, SqliteStore, StoreError};

use crate::config::{JournalBackend, JournalConfig};

/// The store `journal.backend` names; `None` for memory (nothing to open).
pub fn open(journal: &JournalConfig) -> Result<Option<Box<dyn JournalStore>>, StoreError> {
    Ok(match &journal.backend {
        JournalBackend::Memory => None,
        JournalBackend::Sqlite { data_dir } => Some(Box::new(SqliteStore::open_with(data_dir, apply_policy(journal))?)),
        JournalBackend::Postgres(pg) => {
            Some(Box::new(PostgresStore::open(pg_options(pg, journal, lastmile_store::Fence::Lock, Duration::ZERO))?))
        }
    })
}

/// The PostgreSQL store's options from `[journal]`, with `fence` and the
/// log's retention (a cluster's; zero for one node).
pub fn pg_options(
    pg: &crate::config::PostgresJournal,
    journal: &JournalConfig,
    fence: lastmile_store::Fence,
    log_retention: Duration,
) -> PgOptions {
    PgOptions {
        url: pg.url.clone(),
        schema: pg.schema.clone(),
        pool_size: pg.pool_size,
        connect_timeout: Duration::from_millis(pg.connect_timeout_ms),
        statement_timeout: Duration::from_millis(pg.statement_timeout_ms),
        apply: apply_policy(journal),
        fence,
        log_retention,
    }
}

/// When either store writes its tables from its log
/// (`journal.apply_max_records`, `journal.apply_interval_ms`).
fn apply_policy(journal: &JournalConfig) -> ApplyPolicy {
    ApplyPolicy { max_records: journal.apply_max_records, interval: Duration::from_millis(journal.apply_interval_ms) }
}

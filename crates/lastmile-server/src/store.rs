//! The one place the server opens its journal store: the configured
//! backend resolved to an implementation of
//! [`lastmile_store::JournalStore`]. A second backend is a new variant of
//! [`JournalBackend`] and one more arm here.

use lastmile_store::{JournalStore, SqliteStore, StoreError};

use crate::config::JournalBackend;

/// The store for `backend`; `None` for memory (nothing to open).
pub fn open(backend: &JournalBackend) -> Result<Option<Box<dyn JournalStore>>, StoreError> {
    Ok(match backend {
        JournalBackend::Memory => None,
        JournalBackend::Sqlite { data_dir } => Some(Box::new(SqliteStore::open(data_dir)?)),
    })
}

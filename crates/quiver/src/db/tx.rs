//! Transactions: a read transaction as a guard that ends on drop, and the
//! write transaction every mutation is, holding the store's writer lock.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::Db;
use crate::error::{Result, SqlContext};
use crate::lock::Held;

/// A read transaction: one consistent view of the database until it is
/// ended, or until it is dropped on any other way out (an error, an early
/// return), which rolls it back so the pooled connection is never left
/// inside a transaction.
pub(crate) struct ReadTx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> ReadTx<'c> {
    /// Begin one; on a connection already inside one (pinned by
    /// [`super::Db::pinned`]), this is a part of that one.
    pub(crate) fn begin(conn: &'c Connection) -> Result<Self> {
        if !conn.is_autocommit() {
            return Ok(ReadTx { conn, open: false });
        }
        conn.execute_batch("BEGIN DEFERRED")
            .during("begin read transaction")?;
        Ok(ReadTx { conn, open: true })
    }

    pub(crate) fn end(mut self) -> Result<()> {
        if !std::mem::replace(&mut self.open, false) {
            return Ok(());
        }
        self.conn
            .execute_batch("COMMIT")
            .during("end read transaction")
    }
}

impl Drop for ReadTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing was written; if even this fails, SQLite ends the
            // transaction when the connection is next used or closed.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A write transaction holding the store's writer lock: SQLite's
/// `BEGIN IMMEDIATE` taken after the lock, so no other Quiver process can
/// commit between this one's first read and its commit. Dropped without
/// [`WriteTx::commit`] it rolls back, then lets the lock go.
pub(crate) struct WriteTx<'c> {
    /// Declared first: rolled back before the lock is released.
    tx: Transaction<'c>,
    held: Option<Held<'c>>,
    db: &'c Db,
    before: i64,
}

/// SQLite's `data_version` just before a write transaction began and just
/// after it committed, both read under the writer lock: when they differ
/// only this commit came between them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Versions {
    pub(crate) before: i64,
    pub(crate) after: i64,
}

impl<'c> WriteTx<'c> {
    pub(super) fn begin(
        db: &'c Db,
        conn: &'c mut Connection,
        held: Option<Held<'c>>,
        before: i64,
        operation: &str,
    ) -> Result<Self> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .during(&format!("begin {operation}"))?;
        Ok(WriteTx {
            tx,
            held,
            db,
            before,
        })
    }

    /// Commit, then let the lock go.
    pub(crate) fn commit(self, operation: &str) -> Result<Versions> {
        let WriteTx {
            tx,
            held,
            db,
            before,
        } = self;
        tx.commit().during(&format!("commit {operation}"))?;
        // The commit stands whatever this says; -1 only costs the next
        // search a look at the collection row.
        let after = db.data_version().unwrap_or(-1);
        drop(held);
        Ok(Versions { before, after })
    }
}

impl<'c> std::ops::Deref for WriteTx<'c> {
    type Target = Transaction<'c>;
    fn deref(&self) -> &Transaction<'c> {
        &self.tx
    }
}

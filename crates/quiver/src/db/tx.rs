//! Transactions: a read transaction as a guard that ends on drop, and the
//! write transaction every mutation is.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Result, SqlContext};

/// A read transaction: one consistent view of the database until it is
/// ended, or until it is dropped on any other way out (an error, an early
/// return), which rolls it back so the pooled connection is never left
/// inside a transaction.
pub(crate) struct ReadTx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> ReadTx<'c> {
    pub(crate) fn begin(conn: &'c Connection) -> Result<Self> {
        conn.execute_batch("BEGIN DEFERRED")
            .during("begin read transaction")?;
        Ok(ReadTx { conn, open: true })
    }

    pub(crate) fn end(mut self) -> Result<()> {
        self.open = false;
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

/// Begin a mutation's transaction, taking SQLite's write lock at once. It
/// rolls back when dropped without a commit.
pub(crate) fn write<'c>(conn: &'c mut Connection, operation: &str) -> Result<Transaction<'c>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .during(&format!("begin {operation}"))
}

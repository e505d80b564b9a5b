//! Hits from index keys: ids from the key → id cache or SQLite, and the fields asked for.

use super::*;

/// Fill a collection's id cache from SQLite on a background thread, so
/// that ids-only searches stop going to SQLite soon after open without
/// making the open itself wait. Stops when the store or collection goes.
pub(super) fn warm_ids(
    conn: Connection,
    state: std::sync::Weak<CollState>,
) -> Option<std::thread::JoinHandle<()>> {
    const ROWS: i64 = 16_384;
    std::thread::Builder::new()
        .name("quiver-warm-ids".into())
        .spawn(move || {
            let mut after = i64::MIN;
            loop {
                let Some(st) = state.upgrade() else { return };
                if st.warm.stop.load(Ordering::Acquire) {
                    return;
                }
                let rows = records::ids_after(&conn, st.cid, after, ROWS);
                let Ok(rows) = rows else { return };
                let Some(last) = rows.last() else { return };
                after = last.0;
                let ix = st.indexes.read_lock();
                // Only keys the index holds: a key deleted meanwhile stays out.
                let mut ids = ix.ids.write_lock();
                for (key, id) in rows {
                    if ix.contains(key as u64) {
                        ids.entry(key as u64).or_insert_with(|| id.into_boxed_str());
                    }
                }
            }
        })
        .ok()
}

impl Collection {
    /// Turn index keys into hits, skipping keys deleted meanwhile.
    pub(super) fn resolve(
        &self,
        found: &[(u64, f32, Option<Ranks>)],
        include: Include,
        dim: usize,
    ) -> Result<Vec<Hit>> {
        if include == Include::default() {
            return self.resolve_ids(found);
        }
        let rows = self.rows_of(dim);
        let columns = records::Columns {
            text: include.text,
            metadata: include.metadata,
            vector: include.vector,
        };
        let keys = found.iter().map(|(key, _, _)| *key);
        let found_rows = self
            .store
            .read(|conn| records::hit_rows(conn, rows, keys, columns))?;
        let hits = found
            .iter()
            .zip(found_rows)
            .filter_map(|((_, distance, ranks), row)| {
                // Deleted since the index search: no hit (the caller retries).
                let row = row?;
                Some(Hit {
                    id: row.id,
                    distance: ranks.is_none().then_some(*distance),
                    text: row.text,
                    metadata: row.metadata,
                    vector: row.vector,
                    ranks: ranks.clone(),
                })
            })
            .collect();
        Ok(hits)
    }

    /// [`Collection::resolve`] for ids-only hits: from the id cache, and
    /// from SQLite (then cached) for keys not in it.
    pub(super) fn resolve_ids(&self, found: &[(u64, f32, Option<Ranks>)]) -> Result<Vec<Hit>> {
        let hit = |id: &str, distance: f32, ranks: &Option<Ranks>| Hit {
            id: id.to_string(),
            distance: ranks.is_none().then_some(distance),
            text: None,
            metadata: None,
            vector: None,
            ranks: ranks.clone(),
        };
        let mut hits: Vec<Option<Hit>> = Vec::with_capacity(found.len());
        let mut missing = Vec::new();
        {
            let ix = self.state.indexes.read_lock();
            let ids = ix.ids.read_lock();
            for (i, (key, distance, ranks)) in found.iter().enumerate() {
                match ids.get(key) {
                    Some(id) => hits.push(Some(hit(id, *distance, ranks))),
                    None => {
                        hits.push(None);
                        missing.push(i);
                    }
                }
            }
        }
        if !missing.is_empty() {
            // Warm up once searches have missed a few hundred keys: a
            // one-shot search (one CLI call) never pays for it.
            let missed = self
                .state
                .warm
                .misses
                .fetch_add(missing.len() as u64, Ordering::Relaxed);
            if missed >= 256 && !self.state.warm.started.swap(true, Ordering::AcqRel) {
                if let Ok(conn) = self.store.open_reader() {
                    *self.state.warm.thread.locked() = warm_ids(conn, Arc::downgrade(&self.state));
                }
            }
            let cid = self.state.cid;
            let keys = missing.iter().map(|&i| found[i].0);
            let looked_up = self.store.read(|conn| records::ids_of(conn, cid, keys))?;
            let rows = missing
                .iter()
                .zip(looked_up)
                .map(|(&i, id)| (i, found[i].0, id));
            let ix = self.state.indexes.read_lock();
            let mut ids = ix.ids.write_lock();
            for (i, key, id) in rows {
                // Deleted since the index search: no hit (the caller retries).
                let Some(id) = id else { continue };
                let (_, distance, ranks) = &found[i];
                hits[i] = Some(hit(&id, *distance, ranks));
                // A key deleted after this lookup may be cached here, but
                // the index never returns a removed key again, so the entry
                // is never read.
                ids.insert(key, id.into_boxed_str());
            }
        }
        Ok(hits.into_iter().flatten().collect())
    }
}

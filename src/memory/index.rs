//! Keeping the vector index in step with SQLite: catching up what it
//! lacks, dropping what was compacted, rebuilding it (`reindex`, and
//! `relayout` for an older payload layout).

use super::*;

/// What `Memory::catch_up` did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CaughtUp {
    /// Rows added to the index.
    pub indexed: usize,
    /// Of those, rows that had to be embedded (saved without a vector).
    pub embedded: usize,
    /// Compacted rows taken out of the index.
    pub dropped: usize,
}

/// Rows per catch-up batch: one embedding call, one upsert, one flush.
pub(super) const CATCH_UP_BATCH: usize = 512;

impl Memory {
    /// The index is there and of this model; one an older llmclis made
    /// is rebuilt first from the vectors the database keeps (`relayout`).
    pub(super) async fn ready(&self, db: &mut Store) -> Result<()> {
        match self.index.ensure(&self.info()).await {
            Err(Error::Index(vector::IndexError::OldLayout { .. })) => self.relayout(db).await,
            r => r,
        }
    }

    /// Rebuilds the index in this build's payload layout: every indexed
    /// row again, with the vector SQLite keeps (embedded only where there
    /// is none). A kill part way leaves an index `ensure` refuses as
    /// incomplete, for `memory reindex`.
    pub(super) async fn relayout(&self, db: &mut Store) -> Result<()> {
        self.index.reset(&self.info()).await?;
        db.batch(|s| {
            s.conn()
                .execute("UPDATE memories SET indexed = 0 WHERE indexed = 1", [])?;
            Ok(())
        })?;
        self.index_missing(db, usize::MAX, None).await?;
        self.index.optimize().await?;
        self.index.finish(&self.info()).await
    }

    /// Brings the index up to the database: indexes every row it lacks
    /// (rows a killed process, or one without the index lock, left behind),
    /// re-embedding only rows saved without their vector, and drops rows
    /// compacted since. Flushes before marking, so a row marked indexed is
    /// in the index whatever happens next. `progress(done, total)` is
    /// called after each batch.
    pub async fn catch_up(
        &self,
        db: &mut Store,
        progress: Option<&(dyn Fn(usize, usize) + Send + Sync)>,
    ) -> Result<CaughtUp> {
        self.catch_up_at_most(db, usize::MAX, progress).await
    }

    /// `catch_up`, stopping after about `limit` rows (a batch is never
    /// split): a background indexer does a little at a time, so what waits
    /// for it (a query to embed) never waits long.
    pub async fn catch_up_at_most(
        &self,
        db: &mut Store,
        limit: usize,
        progress: Option<&(dyn Fn(usize, usize) + Send + Sync)>,
    ) -> Result<CaughtUp> {
        self.ready(db).await?;
        // Rows marked indexed in an index that has nothing (its directory
        // was deleted, another backend): all of them again.
        let marked: i64 =
            db.conn()
                .query_row("SELECT count(*) FROM memories WHERE indexed = 1", [], |r| {
                    r.get(0)
                })?;
        if marked > 0 && self.index.count(Filter::default()).await? == 0 {
            db.batch(|s| {
                s.conn()
                    .execute("UPDATE memories SET indexed = 0 WHERE indexed = 1", [])?;
                Ok(())
            })?;
        }
        self.index_missing(db, limit, progress).await
    }

    pub(super) async fn index_missing(
        &self,
        db: &mut Store,
        limit: usize,
        progress: Option<&(dyn Fn(usize, usize) + Send + Sync)>,
    ) -> Result<CaughtUp> {
        let mut out = CaughtUp::default();
        let total: i64 = db.conn().query_row(
            "SELECT count(*) FROM memories WHERE indexed = 0 AND compacted = 0",
            [],
            |r| r.get(0),
        )?;
        let dim = self.embedder.dim();
        while out.indexed < limit {
            let batch: Vec<(MemoryRecord, Option<Vec<f32>>)> = {
                let mut stmt = db.conn().prepare_cached(&format!(
                    "SELECT {COLUMNS}, vector FROM memories WHERE indexed = 0 AND compacted = 0
                      ORDER BY id LIMIT ?1"
                ))?;
                stmt.query_map([limit.min(CATCH_UP_BATCH) as i64], |r| {
                    let blob: Option<Vec<u8>> = r.get(10)?;
                    Ok((from_row(r)?, blob.map(|b| decode_vector(&b))))
                })?
                .collect::<rusqlite::Result<_>>()?
            };
            if batch.is_empty() {
                break;
            }
            // Only rows saved without a vector (or with one of another
            // size, from another model) are embedded again.
            let need: Vec<usize> = (0..batch.len())
                .filter(|i| batch[*i].1.as_ref().is_none_or(|v| v.len() != dim))
                .collect();
            let mut vectors: Vec<Option<Vec<f32>>> = batch.iter().map(|(_, v)| v.clone()).collect();
            if !need.is_empty() {
                let made = self
                    .embedder
                    .embed(need.iter().map(|i| batch[*i].0.text.clone()).collect())
                    .await?;
                db.batch(|s| {
                    let mut stmt = s
                        .conn()
                        .prepare_cached("UPDATE memories SET vector = ?2 WHERE id = ?1")?;
                    for (i, v) in need.iter().zip(&made) {
                        stmt.execute(params![batch[*i].0.id, encode_vector(v)])?;
                    }
                    Ok(())
                })?;
                for (i, v) in need.iter().zip(made) {
                    vectors[*i] = Some(v);
                }
                out.embedded += need.len();
            }
            let ids: Vec<i64> = batch.iter().map(|(r, _)| r.id).collect();
            let points = batch
                .iter()
                .zip(vectors)
                .map(|((r, _), v)| Ok((r.id as u64, v.unwrap_or_default(), meta_of(db, r)?)))
                .collect::<Result<_>>()?;
            self.index.upsert(points).await?;
            self.index.flush().await?;
            mark_indexed(db, &ids, true)?;
            out.indexed += ids.len();
            if let Some(p) = progress {
                p(out.indexed, total.max(out.indexed as i64) as usize);
            }
        }
        // Compacted since they were indexed (a compaction whose index
        // update was cut short).
        let gone: Vec<i64> = {
            let mut stmt = db
                .conn()
                .prepare_cached("SELECT id FROM memories WHERE indexed = 1 AND compacted = 1")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        if !gone.is_empty() {
            self.index
                .delete(gone.iter().map(|i| *i as u64).collect())
                .await?;
            self.index.flush().await?;
            mark_indexed(db, &gone, false)?;
            out.dropped = gone.len();
        }
        Ok(out)
    }

    /// Indexes one saved record; a failure says the record is safe and
    /// that the next open indexes it.
    pub(super) async fn upsert(
        &self,
        db: &Store,
        record: &MemoryRecord,
        vector: Vec<f32>,
    ) -> Result<()> {
        let meta = meta_of(db, record)?;
        self.index
            .upsert(vec![(record.id as u64, vector, meta)])
            .await
            .map_err(|e| match e {
                Error::Index(ie) if ie.is_transient() => Error::Index(ie),
                e => {
                Error::Memory(format!(
                    "memory {} is saved but not indexed yet ({e}); the next command that opens the index indexes it",
                    record.id
                ))
                }
            })
    }

    /// Rebuilds the index from SQLite: every record that is not compacted,
    /// embedded again with the configured model (the kept vectors may be
    /// another model's).
    pub async fn reindex(
        &self,
        db: &mut Store,
        progress: Option<&(dyn Fn(usize, usize) + Send + Sync)>,
    ) -> Result<usize> {
        self.index.reset(&self.info()).await?;
        db.batch(|s| {
            s.conn().execute(
                "UPDATE memories SET indexed = 0, vector = NULL WHERE indexed = 1 OR vector IS NOT NULL",
                [],
            )?;
            Ok(())
        })?;
        let done = self.index_missing(db, usize::MAX, progress).await?;
        self.index.optimize().await?;
        self.index.finish(&self.info()).await?;
        Ok(done.indexed)
    }

    /// `stats` with the index's own count beside the store's: what
    /// `memory stats --verify` reports.
    pub async fn stats(&self, db: &Store, project_id: Option<i64>) -> Result<Stats> {
        let mut st = stats(
            db,
            project_id,
            self.index.describe(),
            self.embedder.model(),
            self.embedder.dim(),
        )?;
        st.index_points = Some(
            self.index
                .count(Filter {
                    project_id,
                    ..Default::default()
                })
                .await?,
        );
        Ok(st)
    }
}

//! The embedded backend: a Qdrant Edge shard in a directory of its own,
//! locked to one process at a time.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use serde_json::json;

use super::{
    Filter, IndexError, IndexInfo, PointMeta, VECTOR, VectorIndex, dimension_error, mismatch,
};
use crate::error::{Error, Result};
use crate::net::BoxFuture;

/// Qdrant Edge's types, under one short name.
mod qe {
    pub use qdrant_edge::{
        AcornSearchParams, Condition, CountRequest, CreateIndex, Distance, EdgeConfig,
        EdgeOptimizersConfig, EdgeShard, EdgeVectorParams, FieldCondition, FieldIndexOperations,
        Filter, IntegerIndexParams, JsonPath, KeywordIndexParams, Match, NamedQuery,
        PayloadFieldSchema, PayloadSchemaParams, PointId, PointInsertOperations, PointOperations,
        PointStruct, PointStructPersisted, QueryEnum, QueryRequest, ScoringQuery, SearchParams,
        UpdateOperation, ValueVariants, VectorInternal, Vectors, WithPayloadInterface, WithVector,
    };
}

const INFO_FILE: &str = "llmclis-index.json";

pub struct EdgeIndex {
    dir: PathBuf,
    /// Searches and counts share it; writes take it alone. A flush needs
    /// only a share (writes are excluded, and `flushing` keeps flushes one
    /// at a time), so a search never waits for one.
    shard: RwLock<Option<qe::EdgeShard>>,
    flushing: Mutex<()>,
    /// An OS lock on `<dir>.lock`: a shard directory may be open in one
    /// process at a time. Released when this drops, or when the process dies.
    _lock: std::fs::File,
}

fn edge_err(e: impl std::fmt::Display) -> Error {
    Error::Memory(format!("Qdrant Edge: {e}"))
}

impl EdgeIndex {
    /// A write or search error; a vector of the wrong size is typed, the
    /// same as a server's.
    fn fail(&self, e: impl std::fmt::Display) -> Error {
        let message = e.to_string();
        match dimension_error(&message) {
            Some((expected, got)) => IndexError::Dimension {
                at: self.describe(),
                expected,
                got,
            }
            .into(),
            None => edge_err(message),
        }
    }

    pub fn describe_dir(dir: &Path) -> String {
        format!("Qdrant Edge at {}", dir.display())
    }

    /// Opens (or prepares) the index in `dir`; the shard itself is created by
    /// the first `ensure`, when the dimension is known.
    pub fn open(dir: &Path) -> Result<EdgeIndex> {
        Self::open_waiting(dir, std::time::Duration::from_secs(15))
    }

    /// `open`, waiting at most `wait` for another process to let go.
    pub fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<EdgeIndex> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::IndexBusy(dir.to_path_buf()));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
            }
        }
        let shard = if dir.join("edge_config.json").exists() {
            let s = qe::EdgeShard::load(dir, None).map_err(edge_err)?;
            create_indexes(&s)?;
            Some(s)
        } else {
            None
        };
        Ok(EdgeIndex {
            dir: dir.to_path_buf(),
            shard: RwLock::new(shard),
            flushing: Mutex::new(()),
            _lock: lock,
        })
    }

    fn info(&self) -> Option<IndexInfo> {
        let bytes = std::fs::read(self.dir.join(INFO_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn create(&self, info: &IndexInfo, record_info: bool) -> Result<qe::EdgeShard> {
        let config = qe::EdgeConfig::builder()
            .vector(
                VECTOR,
                qe::EdgeVectorParams::builder(info.dim, qe::Distance::Cosine).build(),
            )
            .on_disk_payload(true)
            // Build the HNSW graph for segments past ~2,000 vectors (384-d f32).
            .optimizers(qe::EdgeOptimizersConfig {
                indexing_threshold: Some(3_000),
                ..Default::default()
            })
            .build();
        // A new index records its model before the shard exists: a process
        // killed in between leaves a directory that the next open creates
        // again, never one that looks like an interrupted rebuild.
        if record_info {
            self.record(info)?;
        }
        let shard = qe::EdgeShard::new(&self.dir, config).map_err(edge_err)?;
        create_indexes(&shard)?;
        Ok(shard)
    }

    fn record(&self, info: &IndexInfo) -> Result<()> {
        crate::fsutil::write_atomic(
            &self.dir.join(INFO_FILE),
            &serde_json::to_vec_pretty(info).expect("serializes"),
        )
    }

    /// An update: alone.
    fn with<T>(&self, f: impl FnOnce(&qe::EdgeShard) -> Result<T>) -> Result<T> {
        let guard = self.shard.write().expect("edge lock");
        match guard.as_ref() {
            Some(s) => f(s),
            None => Err(Error::Memory("the memory index is not created yet".into())),
        }
    }

    /// A read: beside other reads and flushes.
    fn reading<T>(&self, f: impl FnOnce(&qe::EdgeShard) -> Result<T>) -> Result<T> {
        let guard = self.shard.read().expect("edge lock");
        match guard.as_ref() {
            Some(s) => f(s),
            None => Err(Error::Memory("the memory index is not created yet".into())),
        }
    }
}

/// Payload indexes; created on every open, since a new appendable segment
/// does not inherit them from the stored schema.
fn create_indexes(shard: &qe::EdgeShard) -> Result<()> {
    use qe::*;
    let field = |name: &str, schema: PayloadFieldSchema| -> Result<()> {
        let op =
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                field_name: name
                    .parse::<JsonPath>()
                    .map_err(|_| edge_err(format!("bad field {name}")))?,
                field_schema: Some(schema),
            }));
        shard.update(op).map(|_| ()).or_else(|e| {
            if e.to_string().to_lowercase().contains("already") {
                Ok(())
            } else {
                Err(edge_err(e))
            }
        })
    };
    field(
        "project_id",
        PayloadFieldSchema::FieldParams(PayloadSchemaParams::Integer(IntegerIndexParams {
            lookup: Some(true),
            range: Some(false),
            is_principal: Some(true),
            ..Default::default()
        })),
    )?;
    field(
        "task_id",
        PayloadFieldSchema::FieldParams(PayloadSchemaParams::Integer(IntegerIndexParams {
            lookup: Some(true),
            range: Some(false),
            ..Default::default()
        })),
    )?;
    for name in ["type", "agent", "level"] {
        field(
            name,
            PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(
                KeywordIndexParams::default(),
            )),
        )?;
    }
    Ok(())
}

fn edge_filter(f: &Filter) -> Option<qe::Filter> {
    use qe::*;
    let cond = |k: &str, v: ValueVariants| {
        Condition::Field(FieldCondition::new_match(
            k.parse::<JsonPath>().expect("static field names"),
            Match::new_value(v),
        ))
    };
    let mut must = Vec::new();
    if let Some(p) = f.project_id {
        must.push(cond("project_id", ValueVariants::Integer(p)));
    }
    if let Some(t) = f.task_id {
        must.push(cond("task_id", ValueVariants::Integer(t)));
    }
    if let Some(k) = &f.kind {
        must.push(cond("type", ValueVariants::String(k.clone())));
    }
    if let Some(l) = &f.level {
        must.push(cond("level", ValueVariants::String(l.clone())));
    }
    let must_not = if f.skip_raw {
        vec![cond(
            "type",
            ValueVariants::String("raw_interaction".into()),
        )]
    } else {
        vec![]
    };
    (!must.is_empty() || !must_not.is_empty()).then(|| qe::Filter {
        must: (!must.is_empty()).then_some(must),
        must_not: (!must_not.is_empty()).then_some(must_not),
        ..Default::default()
    })
}

fn point_id(id: &qe::PointId) -> Option<u64> {
    match id {
        qe::PointId::NumId(n) => Some(*n),
        _ => None,
    }
}

impl VectorIndex for EdgeIndex {
    fn ensure(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        let info = info.clone();
        Box::pin(async move {
            if self.shard.read().expect("edge lock").is_some() {
                return match self.info() {
                    Some(found) if !found.same_model(&info) => {
                        Err(mismatch(&found, &info, &self.dir.display().to_string()))
                    }
                    Some(found) if found.layout < info.layout => Err(IndexError::OldLayout {
                        at: self.dir.display().to_string(),
                        found: found.layout,
                    }
                    .into()),
                    Some(_) => Ok(()),
                    None => Err(IndexError::Incomplete {
                        at: self.dir.display().to_string(),
                    }
                    .into()),
                };
            }
            let mut guard = self.shard.write().expect("edge lock");
            if guard.is_none() {
                *guard = Some(self.create(&info, true)?);
            }
            Ok(())
        })
    }

    fn upsert(&self, points: Vec<(u64, Vec<f32>, PointMeta)>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if points.is_empty() {
                return Ok(());
            }
            self.with(|s| {
                let list: Vec<qe::PointStructPersisted> = points
                    .into_iter()
                    .map(|(id, v, meta)| {
                        let payload = json!({
                            "project_id": meta.project_id,
                            "task_id": meta.task_id,
                            "type": meta.kind,
                            "agent": meta.agent,
                            "level": meta.level,
                            "parent": meta.parent,
                        });
                        qe::PointStruct::new(id, qe::Vectors::new_named([(VECTOR, v)]), payload)
                            .into()
                    })
                    .collect();
                s.update(qe::UpdateOperation::PointOperation(
                    qe::PointOperations::UpsertPoints(qe::PointInsertOperations::PointsList(list)),
                ))
                .map_err(|e| self.fail(e))?;
                Ok(())
            })
        })
    }

    fn search(
        &self,
        vector: Vec<f32>,
        filter: Filter,
        limit: usize,
        exact: bool,
    ) -> BoxFuture<'_, Result<Vec<(u64, f32)>>> {
        Box::pin(async move {
            self.reading(|s| {
                let req = qe::QueryRequest {
                    prefetches: vec![],
                    query: Some(qe::ScoringQuery::Vector(qe::QueryEnum::Nearest(
                        qe::NamedQuery::new(qe::VectorInternal::Dense(vector), VECTOR),
                    ))),
                    filter: edge_filter(&filter),
                    score_threshold: None,
                    limit,
                    offset: 0,
                    // ACORN keeps recall up when the filter (one project)
                    // leaves a sparse part of the graph; a wider beam than
                    // the default helps it further.
                    params: Some(qe::SearchParams {
                        exact,
                        hnsw_ef: (!exact).then_some((limit * 8).max(256)),
                        acorn: Some(qe::AcornSearchParams {
                            enable: true,
                            max_selectivity: None,
                        }),
                        ..Default::default()
                    }),
                    with_vector: qe::WithVector::Bool(false),
                    with_payload: qe::WithPayloadInterface::Bool(false),
                };
                let hits = s.query(req).map_err(|e| self.fail(e))?;
                Ok(hits
                    .iter()
                    .filter_map(|h| Some((point_id(&h.id)?, h.score)))
                    .collect())
            })
        })
    }

    fn delete(&self, ids: Vec<u64>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            self.with(|s| {
                s.update(qe::UpdateOperation::PointOperation(
                    qe::PointOperations::DeletePoints {
                        ids: ids.into_iter().map(qe::PointId::NumId).collect(),
                    },
                ))
                .map_err(edge_err)?;
                Ok(())
            })
        })
    }

    fn count(&self, filter: Filter) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let guard = self.shard.read().expect("edge lock");
            match guard.as_ref() {
                None => Ok(0),
                Some(s) => s
                    .count(qe::CountRequest {
                        filter: edge_filter(&filter),
                        exact: true,
                    })
                    .map_err(edge_err),
            }
        })
    }

    fn reset(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        let info = info.clone();
        Box::pin(async move {
            let mut guard = self.shard.write().expect("edge lock");
            // Close the shard before its files go.
            drop(guard.take());
            if self.dir.exists() {
                std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            }
            std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            // No model record until `finish`: an interrupted rebuild stays refused.
            let _ = std::fs::remove_file(self.dir.join(INFO_FILE));
            *guard = Some(self.create(&info, false)?);
            Ok(())
        })
    }

    fn finish(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        let info = info.clone();
        Box::pin(async move { self.record(&info) })
    }

    fn optimize(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.with(|s| s.optimize().map(|_| ()).map_err(edge_err)) })
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let _one = self.flushing.lock().expect("flush lock");
            let guard = self.shard.read().expect("edge lock");
            if let Some(s) = guard.as_ref() {
                s.flush();
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        EdgeIndex::describe_dir(&self.dir)
    }
}

impl Drop for EdgeIndex {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.shard.write()
            && let Some(s) = guard.take()
        {
            s.flush();
        }
    }
}

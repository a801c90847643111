//! The vector index behind memory: one trait, two backends with the same
//! behaviour. `EdgeIndex` (embedded Qdrant Edge, the default, no server) and
//! `QdrantIndex` (a Qdrant server over its REST API). SQLite holds the
//! records; an index can always be rebuilt from it (`memory reindex`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::llm::BoxFuture;

/// What an indexed memory carries besides its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointMeta {
    pub project_id: i64,
    pub task_id: Option<i64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub agent: String,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub project_id: Option<i64>,
    pub task_id: Option<i64>,
    pub kind: Option<String>,
}

/// The model and dimension an index was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    pub model: String,
    pub dim: usize,
}

pub trait VectorIndex: Send + Sync {
    /// Checks the index was built with `info` (creating it when empty); a
    /// different model or dimension is an error that points to `memory reindex`.
    fn ensure(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>>;
    fn upsert(&self, points: Vec<(u64, Vec<f32>, PointMeta)>) -> BoxFuture<'_, Result<()>>;
    /// Top `limit` ids by cosine similarity, best first; `exact` skips the ANN index.
    fn search(
        &self,
        vector: Vec<f32>,
        filter: Filter,
        limit: usize,
        exact: bool,
    ) -> BoxFuture<'_, Result<Vec<(u64, f32)>>>;
    fn delete(&self, ids: Vec<u64>) -> BoxFuture<'_, Result<()>>;
    fn count(&self, filter: Filter) -> BoxFuture<'_, Result<usize>>;
    /// Drops everything (for `memory reindex`).
    fn reset(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>>;
    /// Builds the ANN index and merges segments; a no-op for a server.
    fn optimize(&self) -> BoxFuture<'_, Result<()>>;
    /// Makes what was upserted and deleted so far durable, so a process
    /// killed after this loses none of it. A server's writes already are
    /// (they wait for the write-ahead log).
    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Marks a rebuild (`reset`, then upserts) complete. Until then the
    /// index refuses to be used, so an interrupted reindex is never taken
    /// for a whole one.
    fn finish(&self, _info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn describe(&self) -> String;
}

fn mismatch(found: &IndexInfo, want: &IndexInfo, where_: &str) -> Error {
    Error::Memory(format!(
        "the memory index at {where_} was built with {} ({} dimensions), not {} ({} dimensions); run `llmclis memory reindex` to rebuild it from the database",
        found.model, found.dim, want.model, want.dim
    ))
}

// ---------------------------------------------------------------- Edge ----

mod edge {
    pub use qdrant_edge::{
        AcornSearchParams, Condition, CountRequest, CreateIndex, Distance, EdgeConfig,
        EdgeOptimizersConfig, EdgeShard, EdgeVectorParams, FieldCondition, FieldIndexOperations,
        Filter, IntegerIndexParams, JsonPath, KeywordIndexParams, Match, NamedQuery,
        PayloadFieldSchema, PayloadSchemaParams, PointId, PointInsertOperations, PointOperations,
        PointStruct, PointStructPersisted, QueryEnum, QueryRequest, ScoringQuery, SearchParams,
        UpdateOperation, ValueVariants, VectorInternal, Vectors, WithPayloadInterface, WithVector,
    };
}

const VECTOR: &str = "text";
const INFO_FILE: &str = "llmclis-index.json";

pub struct EdgeIndex {
    dir: PathBuf,
    /// Searches and counts share it; writes take it alone. A flush needs
    /// only a share (writes are excluded, and `flushing` keeps flushes one
    /// at a time), so a search never waits for one.
    shard: RwLock<Option<edge::EdgeShard>>,
    flushing: Mutex<()>,
    /// An OS lock on `<dir>.lock`: a shard directory may be open in one
    /// process at a time. Released when this drops, or when the process dies.
    _lock: std::fs::File,
}

fn edge_err(e: impl std::fmt::Display) -> Error {
    Error::Memory(format!("Qdrant Edge: {e}"))
}

impl EdgeIndex {
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
            let s = edge::EdgeShard::load(dir, None).map_err(edge_err)?;
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

    fn create(&self, info: &IndexInfo, record_info: bool) -> Result<edge::EdgeShard> {
        let config = edge::EdgeConfig::builder()
            .vector(
                VECTOR,
                edge::EdgeVectorParams::builder(info.dim, edge::Distance::Cosine).build(),
            )
            .on_disk_payload(true)
            // Build the HNSW graph for segments past ~2,000 vectors (384-d f32).
            .optimizers(edge::EdgeOptimizersConfig {
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
        let shard = edge::EdgeShard::new(&self.dir, config).map_err(edge_err)?;
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
    fn with<T>(&self, f: impl FnOnce(&edge::EdgeShard) -> Result<T>) -> Result<T> {
        let guard = self.shard.write().expect("edge lock");
        match guard.as_ref() {
            Some(s) => f(s),
            None => Err(Error::Memory("the memory index is not created yet".into())),
        }
    }

    /// A read: beside other reads and flushes.
    fn reading<T>(&self, f: impl FnOnce(&edge::EdgeShard) -> Result<T>) -> Result<T> {
        let guard = self.shard.read().expect("edge lock");
        match guard.as_ref() {
            Some(s) => f(s),
            None => Err(Error::Memory("the memory index is not created yet".into())),
        }
    }
}

/// Payload indexes; created on every open, since a new appendable segment
/// does not inherit them from the stored schema.
fn create_indexes(shard: &edge::EdgeShard) -> Result<()> {
    use edge::*;
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
    for name in ["type", "agent"] {
        field(
            name,
            PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(
                KeywordIndexParams::default(),
            )),
        )?;
    }
    Ok(())
}

fn edge_filter(f: &Filter) -> Option<edge::Filter> {
    use edge::*;
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
    (!must.is_empty()).then(|| edge::Filter {
        must: Some(must),
        ..Default::default()
    })
}

fn point_id(id: &edge::PointId) -> Option<u64> {
    match id {
        edge::PointId::NumId(n) => Some(*n),
        _ => None,
    }
}

impl VectorIndex for EdgeIndex {
    fn ensure(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        let info = info.clone();
        Box::pin(async move {
            if self.shard.read().expect("edge lock").is_some() {
                return match self.info() {
                    Some(found) if found != info => {
                        Err(mismatch(&found, &info, &self.dir.display().to_string()))
                    }
                    Some(_) => Ok(()),
                    None => Err(Error::Memory(format!(
                        "the memory index at {} is incomplete (a rebuild was interrupted); run `llmclis memory reindex`",
                        self.dir.display()
                    ))),
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
                let list: Vec<edge::PointStructPersisted> = points
                    .into_iter()
                    .map(|(id, v, meta)| {
                        let payload = json!({
                            "project_id": meta.project_id,
                            "task_id": meta.task_id,
                            "type": meta.kind,
                            "agent": meta.agent,
                        });
                        edge::PointStruct::new(id, edge::Vectors::new_named([(VECTOR, v)]), payload)
                            .into()
                    })
                    .collect();
                s.update(edge::UpdateOperation::PointOperation(
                    edge::PointOperations::UpsertPoints(edge::PointInsertOperations::PointsList(
                        list,
                    )),
                ))
                .map_err(edge_err)?;
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
                let req = edge::QueryRequest {
                    prefetches: vec![],
                    query: Some(edge::ScoringQuery::Vector(edge::QueryEnum::Nearest(
                        edge::NamedQuery::new(edge::VectorInternal::Dense(vector), VECTOR),
                    ))),
                    filter: edge_filter(&filter),
                    score_threshold: None,
                    limit,
                    offset: 0,
                    // ACORN keeps recall up when the filter (one project)
                    // leaves a sparse part of the graph; a wider beam than
                    // the default helps it further.
                    params: Some(edge::SearchParams {
                        exact,
                        hnsw_ef: (!exact).then_some((limit * 8).max(256)),
                        acorn: Some(edge::AcornSearchParams {
                            enable: true,
                            max_selectivity: None,
                        }),
                        ..Default::default()
                    }),
                    with_vector: edge::WithVector::Bool(false),
                    with_payload: edge::WithPayloadInterface::Bool(false),
                };
                let hits = s.query(req).map_err(edge_err)?;
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
                s.update(edge::UpdateOperation::PointOperation(
                    edge::PointOperations::DeletePoints {
                        ids: ids.into_iter().map(edge::PointId::NumId).collect(),
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
                    .count(edge::CountRequest {
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

// -------------------------------------------------------------- server ----

/// A Qdrant server: one collection for every project, `project_id` a tenant
/// index (Qdrant's multitenancy guidance), created on first use. Spoken to
/// over REST with the HTTP client llmclis already has.
pub struct QdrantIndex {
    url: String,
    collection: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl QdrantIndex {
    pub fn describe_at(url: &str, collection: &str) -> String {
        format!("Qdrant server {url} collection {collection}")
    }

    pub fn new(
        url: &str,
        collection: &str,
        key: Option<String>,
        http: reqwest::Client,
    ) -> QdrantIndex {
        QdrantIndex {
            url: url.trim_end_matches('/').to_string(),
            collection: collection.to_string(),
            key,
            http,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.url))
            .timeout(std::time::Duration::from_secs(30));
        if let Some(k) = &self.key {
            rb = rb.header("api-key", k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.map_err(|e| {
            Error::Memory(format!(
                "Qdrant at {}: {}",
                self.url,
                crate::llm::transport_error(e)
            ))
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Error::Memory(format!(
                "Qdrant at {} answered {}: {}",
                self.url,
                status.as_u16(),
                crate::llm::error_message(&text)
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn filter(f: &Filter) -> Value {
        let mut must = Vec::new();
        if let Some(p) = f.project_id {
            must.push(json!({"key": "project_id", "match": {"value": p}}));
        }
        if let Some(t) = f.task_id {
            must.push(json!({"key": "task_id", "match": {"value": t}}));
        }
        if let Some(k) = &f.kind {
            must.push(json!({"key": "type", "match": {"value": k}}));
        }
        json!({"must": must})
    }

    fn path(&self, rest: &str) -> String {
        format!("/collections/{}{rest}", self.collection)
    }
}

impl VectorIndex for QdrantIndex {
    fn ensure(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        let info = info.clone();
        Box::pin(async move {
            let existing = self.call(reqwest::Method::GET, &self.path(""), None).await;
            match existing {
                Ok(v) => {
                    let dim = v
                        .pointer(&format!("/result/config/params/vectors/{VECTOR}/size"))
                        .and_then(Value::as_u64);
                    let model = v
                        .pointer("/result/config/metadata/llmclis_model")
                        .and_then(Value::as_str);
                    // Without our metadata the dimension still has to match.
                    if let Some(d) = dim {
                        let found = IndexInfo {
                            model: model.unwrap_or("an unknown model").to_string(),
                            dim: d as usize,
                        };
                        if found.dim != info.dim || model.is_some_and(|m| m != info.model) {
                            return Err(mismatch(
                                &found,
                                &info,
                                &format!("{} collection {}", self.url, self.collection),
                            ));
                        }
                    }
                    Ok(())
                }
                // Anything but "not found" is a real failure, not a missing collection.
                Err(Error::Memory(m)) if !m.contains("answered 404") => Err(Error::Memory(m)),
                Err(_) => {
                    self.call(
                        reqwest::Method::PUT,
                        &self.path(""),
                        Some(json!({
                            "vectors": {VECTOR: {"size": info.dim, "distance": "Cosine"}},
                            "metadata": {"llmclis_model": info.model},
                        })),
                    )
                    .await?;
                    for (field, schema) in [
                        (
                            "project_id",
                            json!({"type": "integer", "lookup": true, "range": false, "is_tenant": true}),
                        ),
                        (
                            "task_id",
                            json!({"type": "integer", "lookup": true, "range": false}),
                        ),
                        ("type", json!("keyword")),
                        ("agent", json!("keyword")),
                    ] {
                        self.call(
                            reqwest::Method::PUT,
                            &self.path("/index?wait=true"),
                            Some(json!({"field_name": field, "field_schema": schema})),
                        )
                        .await?;
                    }
                    Ok(())
                }
            }
        })
    }

    fn upsert(&self, points: Vec<(u64, Vec<f32>, PointMeta)>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for chunk in points.chunks(256) {
                let list: Vec<Value> = chunk
                    .iter()
                    .map(|(id, v, m)| json!({"id": id, "vector": {VECTOR: v}, "payload": m}))
                    .collect();
                self.call(
                    reqwest::Method::PUT,
                    &self.path("/points?wait=true"),
                    Some(json!({"points": list})),
                )
                .await?;
            }
            Ok(())
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
            let v = self
                .call(
                    reqwest::Method::POST,
                    &self.path("/points/query"),
                    Some(json!({
                        "query": vector, "using": VECTOR, "limit": limit,
                        "filter": Self::filter(&filter), "params": {"exact": exact},
                        "with_payload": false,
                    })),
                )
                .await?;
            Ok(v.pointer("/result/points")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| {
                            Some((p.get("id")?.as_u64()?, p.get("score")?.as_f64()? as f32))
                        })
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    fn delete(&self, ids: Vec<u64>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if !ids.is_empty() {
                self.call(
                    reqwest::Method::POST,
                    &self.path("/points/delete?wait=true"),
                    Some(json!({"points": ids})),
                )
                .await?;
            }
            Ok(())
        })
    }

    fn count(&self, filter: Filter) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let v = self
                .call(
                    reqwest::Method::POST,
                    &self.path("/points/count"),
                    Some(json!({"filter": Self::filter(&filter), "exact": true})),
                )
                .await?;
            Ok(v.pointer("/result/count")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize)
        })
    }

    fn reset(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        let info = info.clone();
        Box::pin(async move {
            let _ = self
                .call(reqwest::Method::DELETE, &self.path(""), None)
                .await;
            self.ensure(&info).await
        })
    }

    fn optimize(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        QdrantIndex::describe_at(&self.url, &self.collection)
    }
}

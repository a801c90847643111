//! A Qdrant server (or cluster) through the official `qdrant-client`, over
//! gRPC. One collection holds every project, `project_id` its tenant index
//! (Qdrant's multitenancy guidance); the collection's metadata records the
//! embedding model and whether a rebuild finished.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use qdrant_client::qdrant::payload_index_params::IndexParams;
use qdrant_client::qdrant::{
    self, AcornSearchParams, Condition, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeletePointsBuilder, FieldType, Filter as QFilter,
    IntegerIndexParamsBuilder, KeywordIndexParamsBuilder, PointStruct, PointsIdsList,
    QueryPointsBuilder, SearchParams, UpdateCollectionBuilder, UpsertPointsBuilder,
    VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::{Qdrant, QdrantError};

use super::{
    Filter, IndexError, IndexInfo, PointMeta, VECTOR, VectorIndex, dimension_error, mismatch,
};
use crate::error::{Error, Result};
use crate::net::BoxFuture;

/// Points per upsert request: well under Qdrant's 32 MiB gRPC message limit
/// at 1,536 dimensions, few enough round trips for a reindex.
const UPSERT_BATCH: usize = 512;

/// Metadata keys on the collection.
const MODEL: &str = "llmclis_model";
/// "complete" once a rebuild finished; "building" while one runs.
const STATE: &str = "llmclis_state";
/// The payload layout; a collection without it predates the tenant index.
const LAYOUT: &str = "llmclis_layout";

/// Layout 1 was "tenant-keyword-1" (the tenant index); 2 adds the memory
/// tree's `level` and `parent`.
fn layout_name(layout: u32) -> String {
    format!("tenant-keyword-{layout}")
}

fn layout_number(name: &str) -> u32 {
    name.strip_prefix("tenant-keyword-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Where the server is and how to reach it.
#[derive(Debug, Clone)]
pub struct QdrantOptions {
    /// gRPC endpoint, `http://host:6334`; `https://` for TLS (the system's
    /// roots, or `SSL_CERT_FILE` for a private CA).
    pub url: String,
    pub collection: String,
    /// Read from the environment by the caller; never stored.
    pub api_key: Option<String>,
    /// Per request.
    pub timeout: Duration,
}

pub struct QdrantIndex {
    at: String,
    url: String,
    collection: String,
    client: Arc<Qdrant>,
    /// The client's connections live on a runtime of their own: a tonic
    /// channel's worker is spawned where it connects, and callers here come
    /// from several runtimes (the run's, the indexer thread's current-thread
    /// one) that may be idle or gone when another calls.
    rt: Option<tokio::runtime::Runtime>,
}

impl QdrantIndex {
    pub fn describe_at(url: &str, collection: &str) -> String {
        format!("Qdrant server {url} collection {collection}")
    }

    /// Prepares the client; nothing is sent until the first call, so a
    /// server that is down shows as `IndexError::Unavailable` there.
    pub fn connect(opts: QdrantOptions) -> Result<QdrantIndex> {
        let url = opts.url.trim_end_matches('/').to_string();
        check_url(&url)?;
        let client = Qdrant::from_url(&url)
            .api_key(opts.api_key)
            .timeout(opts.timeout)
            .connect_timeout(Duration::from_secs(3))
            // Its check prints to stdout, which belongs to `--json`.
            .skip_compatibility_check()
            .build()
            .map_err(|e| Error::InvalidInput(format!("[memory] qdrant_url {url:?}: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("llmclis-qdrant")
            .enable_all()
            .build()
            .map_err(|e| Error::io("<qdrant client runtime>", e))?;
        Ok(QdrantIndex {
            at: Self::describe_at(&url, &opts.collection),
            url,
            collection: opts.collection,
            client: Arc::new(client),
            rt: Some(rt),
        })
    }

    /// Runs one client call on the client's runtime, its error made typed.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Qdrant>) -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>> + Send + 'static,
    {
        self.call_raw(f)
            .await?
            .map_err(|e| classify(&self.at, &self.url, e).into())
    }

    /// `call`, the client's own error left as it is.
    async fn call_raw<T, F, Fut>(&self, f: F) -> Result<std::result::Result<T, QdrantError>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Qdrant>) -> Fut,
        Fut: Future<Output = std::result::Result<T, QdrantError>> + Send + 'static,
    {
        let rt = self.rt.as_ref().expect("runtime lives until drop");
        rt.spawn(f(self.client.clone()))
            .await
            .map_err(|e| Error::Internal(format!("Qdrant client task: {e}")))
    }

    async fn create(&self, info: &IndexInfo, state: &str) -> Result<()> {
        let name = self.collection.clone();
        let mut vectors = VectorsConfigBuilder::default();
        vectors.add_named_vector_params(
            VECTOR,
            VectorParamsBuilder::new(info.dim as u64, qdrant::Distance::Cosine),
        );
        let meta = metadata(info, state);
        let mut req = CreateCollectionBuilder::new(name)
            .vectors_config(vectors)
            .on_disk_payload(true)
            .build();
        req.metadata = meta;
        let made = self
            .call_raw(move |c| async move { c.create_collection(req).await })
            .await?;
        match made {
            Ok(_) => {}
            // Another process created it first: `ensure` checks that one.
            Err(QdrantError::ResponseError { status })
                if status.code() == tonic::Code::AlreadyExists => {}
            Err(e) => return Err(classify(&self.at, &self.url, e).into()),
        }
        // The tenant index: points of one project stored together, and
        // searches filtered to it served from them.
        self.field(
            "project_id",
            FieldType::Keyword,
            KeywordIndexParamsBuilder::default().is_tenant(true).build(),
        )
        .await?;
        self.field(
            "task_id",
            FieldType::Integer,
            IntegerIndexParamsBuilder::new(true, false).build(),
        )
        .await?;
        for name in ["type", "agent", "level"] {
            self.field(
                name,
                FieldType::Keyword,
                KeywordIndexParamsBuilder::default().build(),
            )
            .await?;
        }
        Ok(())
    }

    async fn field(
        &self,
        name: &'static str,
        kind: FieldType,
        params: impl Into<IndexParams>,
    ) -> Result<()> {
        let params: IndexParams = params.into();
        let coll = self.collection.clone();
        self.call(move |c| async move {
            c.create_field_index(
                CreateFieldIndexCollectionBuilder::new(coll, name, kind)
                    .field_index_params(params)
                    .wait(true),
            )
            .await
        })
        .await
        .map(|_| ())
    }

    /// The collection's model, dimension, layout and state; `None` when it
    /// does not exist.
    async fn read(&self) -> Result<Option<Found>> {
        let coll = self.collection.clone();
        let got = self
            .call(move |c| async move { c.collection_info(coll).await })
            .await;
        let info = match got {
            Ok(r) => r.result,
            Err(Error::Index(e)) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let config = info.and_then(|i| i.config);
        let dim = config
            .as_ref()
            .and_then(|c| c.params.as_ref())
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| match &v.config {
                Some(qdrant::vectors_config::Config::ParamsMap(m)) => m.map.get(VECTOR),
                _ => None,
            })
            .map(|p| p.size as usize);
        let meta = config.map(|c| c.metadata).unwrap_or_default();
        let text = |k: &str| match meta.get(k).and_then(|v| v.kind.as_ref()) {
            Some(qdrant::value::Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        };
        Ok(Some(Found {
            dim,
            model: text(MODEL),
            layout: text(LAYOUT),
            state: text(STATE),
        }))
    }

    async fn set_state(&self, info: &IndexInfo, state: &str) -> Result<()> {
        let coll = self.collection.clone();
        let meta = metadata(info, state);
        let mut req = UpdateCollectionBuilder::new(coll).build();
        req.metadata = meta;
        self.call(move |c| async move { c.update_collection(req).await })
            .await
            .map(|_| ())
    }
}

/// The server's version, from its gRPC health check (what `doctor` and
/// first-run show); its errors typed like every call's.
pub async fn server_version(url: &str, api_key: Option<String>) -> Result<String> {
    let ix = QdrantIndex::connect(QdrantOptions {
        url: url.to_string(),
        collection: String::new(),
        api_key,
        timeout: Duration::from_secs(2),
    })?;
    ix.call(|c| async move { c.health_check().await })
        .await
        .map(|r| r.version)
}

impl Drop for QdrantIndex {
    fn drop(&mut self) {
        // Callers may be inside another runtime, where a blocking shutdown
        // is refused.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

struct Found {
    dim: Option<usize>,
    model: Option<String>,
    layout: Option<String>,
    state: Option<String>,
}

fn metadata(info: &IndexInfo, state: &str) -> HashMap<String, qdrant::Value> {
    HashMap::from([
        (MODEL.to_string(), info.model.as_str().into()),
        (LAYOUT.to_string(), layout_name(info.layout).into()),
        (STATE.to_string(), state.into()),
    ])
}

/// Qdrant's REST port given where its gRPC port belongs is the common slip;
/// said before anything is sent.
fn check_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::InvalidInput(format!("[memory] qdrant_url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::InvalidInput(format!(
            "[memory] qdrant_url {url:?}: expected http:// or https://"
        )));
    }
    if parsed.port() == Some(6333) {
        return Err(Error::InvalidInput(format!(
            "[memory] qdrant_url {url:?} is Qdrant's REST port; llmclis talks to Qdrant over gRPC, port 6334 unless the server sets service.grpc_port"
        )));
    }
    Ok(())
}

fn is_not_found(e: &IndexError) -> bool {
    matches!(e, IndexError::Missing { .. })
}

/// The client's error as a value a caller can act on. Codes are the ones
/// Qdrant's `StorageError` maps to (lib/storage/src/content_manager/
/// conversions.rs); a connection that fails is the client pool's
/// `Internal` "Failed to connect".
fn classify(at: &str, url: &str, e: QdrantError) -> IndexError {
    use tonic::Code;
    let at = at.to_string();
    let status = match e {
        QdrantError::ResponseError { status } => status,
        QdrantError::ResourceExhaustedError {
            status,
            retry_after_seconds,
        } => {
            return IndexError::Overloaded {
                at,
                reason: status.message().to_string(),
                retry_after: Some(retry_after_seconds),
            };
        }
        other => {
            return IndexError::Server {
                at,
                message: other.to_string(),
            };
        }
    };
    let message = status.message().to_string();
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => IndexError::Unavailable {
            at,
            reason: short(&message),
        },
        Code::Internal | Code::Unknown if message.starts_with("Failed to connect") => {
            IndexError::Unavailable {
                at,
                reason: format!("cannot connect to {url}"),
            }
        }
        Code::NotFound => IndexError::Missing { at, message },
        Code::Unauthenticated | Code::PermissionDenied => IndexError::Unauthorized {
            at,
            reason: message,
        },
        Code::ResourceExhausted => IndexError::Overloaded {
            at,
            reason: message,
            retry_after: None,
        },
        Code::InvalidArgument => match dimension_error(&message) {
            Some((expected, got)) => IndexError::Dimension { at, expected, got },
            None => IndexError::Server { at, message },
        },
        _ => IndexError::Server { at, message },
    }
}

/// A transport error's debug text can run to hundreds of characters.
fn short(message: &str) -> String {
    let line = message.lines().next().unwrap_or("");
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line.to_string()
    }
}

fn filter(f: &Filter) -> Option<QFilter> {
    let mut must = Vec::new();
    if let Some(p) = f.project_id {
        must.push(Condition::matches("project_id", p.to_string()));
    }
    if let Some(t) = f.task_id {
        must.push(Condition::matches("task_id", t));
    }
    if let Some(k) = &f.kind {
        must.push(Condition::matches("type", k.clone()));
    }
    if let Some(l) = &f.level {
        must.push(Condition::matches("level", l.clone()));
    }
    let must_not = if f.skip_raw {
        vec![Condition::matches("type", "raw_interaction".to_string())]
    } else {
        vec![]
    };
    (!must.is_empty() || !must_not.is_empty()).then(|| QFilter {
        must,
        must_not,
        ..Default::default()
    })
}

fn point(id: u64, vector: Vec<f32>, meta: PointMeta) -> PointStruct {
    let mut payload: HashMap<String, qdrant::Value> = HashMap::from([
        // A keyword: the tenant index is one of keywords.
        ("project_id".to_string(), meta.project_id.to_string().into()),
        ("type".to_string(), meta.kind.into()),
        ("agent".to_string(), meta.agent.into()),
        ("level".to_string(), meta.level.into()),
    ]);
    if let Some(t) = meta.task_id {
        payload.insert("task_id".to_string(), t.into());
    }
    if let Some(p) = meta.parent {
        payload.insert("parent".to_string(), p.into());
    }
    PointStruct::new(id, HashMap::from([(VECTOR.to_string(), vector)]), payload)
}

impl VectorIndex for QdrantIndex {
    fn ensure(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        let info = info.clone();
        Box::pin(async move {
            let found = match self.read().await? {
                Some(f) => f,
                None => {
                    self.create(&info, "complete").await?;
                    match self.read().await? {
                        Some(f) => f,
                        None => {
                            return Err(IndexError::Server {
                                at: self.at.clone(),
                                message: "the collection was created and is gone again".into(),
                            }
                            .into());
                        }
                    }
                }
            };
            let seen = IndexInfo::new(
                found
                    .model
                    .clone()
                    .unwrap_or_else(|| "an unknown model".into()),
                found.dim.unwrap_or(0),
            );
            if found.dim != Some(info.dim) || found.model.as_deref() != Some(info.model.as_str()) {
                return Err(mismatch(&seen, &info, &self.at));
            }
            // Before the tenant index (no layout) or before the memory
            // tree's fields: rebuilt from the database's vectors.
            let layout = found.layout.as_deref().map_or(0, layout_number);
            if layout < info.layout {
                return Err(IndexError::OldLayout {
                    at: self.at.clone(),
                    found: layout,
                }
                .into());
            }
            if found.state.as_deref() != Some("complete") {
                return Err(IndexError::Incomplete {
                    at: self.at.clone(),
                }
                .into());
            }
            Ok(())
        })
    }

    fn upsert(&self, points: Vec<(u64, Vec<f32>, PointMeta)>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut points = points.into_iter().peekable();
            while points.peek().is_some() {
                let batch: Vec<PointStruct> = points
                    .by_ref()
                    .take(UPSERT_BATCH)
                    .map(|(id, v, m)| point(id, v, m))
                    .collect();
                let coll = self.collection.clone();
                // `wait`: acknowledged once in the write-ahead log, so a
                // row marked indexed after this is in the index.
                self.call(move |c| async move {
                    c.upsert_points(UpsertPointsBuilder::new(coll, batch).wait(true))
                        .await
                })
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
            let coll = self.collection.clone();
            let f = self::filter(&filter);
            // The same search as Edge's: a wider beam, and ACORN for the
            // sparse part of the graph one project's filter leaves.
            let params = SearchParams {
                exact: Some(exact),
                hnsw_ef: (!exact).then_some((limit * 8).max(256) as u64),
                acorn: Some(AcornSearchParams {
                    enable: Some(true),
                    max_selectivity: None,
                }),
                ..Default::default()
            };
            let got = self
                .call(move |c| async move {
                    let mut q = QueryPointsBuilder::new(coll)
                        .query(vector)
                        .using(VECTOR)
                        .limit(limit as u64)
                        .params(params)
                        .with_payload(false);
                    if let Some(f) = f {
                        q = q.filter(f);
                    }
                    c.query(q).await
                })
                .await?;
            Ok(got
                .result
                .into_iter()
                .filter_map(|p| match p.id?.point_id_options? {
                    qdrant::point_id::PointIdOptions::Num(n) => Some((n, p.score)),
                    qdrant::point_id::PointIdOptions::Uuid(_) => None,
                })
                .collect())
        })
    }

    fn delete(&self, ids: Vec<u64>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let coll = self.collection.clone();
            self.call(move |c| async move {
                c.delete_points(
                    DeletePointsBuilder::new(coll)
                        .points(PointsIdsList {
                            ids: ids.into_iter().map(Into::into).collect(),
                        })
                        .wait(true),
                )
                .await
            })
            .await
            .map(|_| ())
        })
    }

    fn count(&self, filter: Filter) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let coll = self.collection.clone();
            let f = self::filter(&filter);
            let got = self
                .call(move |c| async move {
                    let mut q = CountPointsBuilder::new(coll).exact(true);
                    if let Some(f) = f {
                        q = q.filter(f);
                    }
                    c.count(q).await
                })
                .await;
            match got {
                Ok(r) => Ok(r.result.map(|r| r.count as usize).unwrap_or(0)),
                // Nothing built yet holds nothing.
                Err(Error::Index(e)) if is_not_found(&e) => Ok(0),
                Err(e) => Err(e),
            }
        })
    }

    fn reset(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        let info = info.clone();
        Box::pin(async move {
            let coll = self.collection.clone();
            let dropped = self
                .call(move |c| async move { c.delete_collection(coll).await })
                .await;
            match dropped {
                Ok(_) => {}
                Err(Error::Index(e)) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
            // Refused by `ensure` until `finish`.
            self.create(&info, "building").await
        })
    }

    fn finish(&self, info: &IndexInfo) -> BoxFuture<'_, Result<()>> {
        let info = info.clone();
        Box::pin(async move { self.set_state(&info, "complete").await })
    }

    fn optimize(&self) -> BoxFuture<'_, Result<()>> {
        // The server's optimizers run on their own.
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        self.at.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_port_is_refused_with_the_grpc_one_named() {
        let e = check_url("http://127.0.0.1:6333").unwrap_err().to_string();
        assert!(e.contains("6334"), "{e}");
        check_url("http://127.0.0.1:6334").unwrap();
        check_url("https://qdrant.example.com").unwrap();
        assert!(check_url("grpc://x:6334").is_err());
    }
}

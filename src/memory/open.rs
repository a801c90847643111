//! Opening the memory layer the config asks for: the embedder (fastembed
//! in-process, or a server's /v1/embeddings) and the index (embedded Qdrant
//! Edge, or a Qdrant server), named by the database's store id.

use std::sync::Arc;
use std::time::Duration;

use super::Memory;
use super::embed::{Embedder, LazyFastEmbedder, OpenAiEmbedder};
use super::vector::{EdgeIndex, QdrantIndex, QdrantOptions, VectorIndex};
use crate::config::{MemoryConfig, Paths};
use crate::error::{Error, Result};
use crate::net::http_client;
use crate::registry::{Mode, Registry};
use crate::store::Store;

/// The embedder and index `[memory]` asks for, for this database, waiting
/// at most `wait` for another process to let go of an Edge index
/// (`Error::IndexBusy` then).
pub fn open(
    paths: &Paths,
    cfg: &MemoryConfig,
    mode: Mode,
    registry: impl FnOnce() -> Result<Registry>,
    db: &Store,
    wait: Duration,
) -> Result<Memory> {
    // Each database has its own index: ids are its row ids.
    let store_id = db.store_id()?;
    let embedder = embedder(paths, cfg, mode, registry)?;
    let index: Arc<dyn VectorIndex> = match cfg.backend.as_str() {
        "edge" => Arc::new(EdgeIndex::open_waiting(&edge_dir(paths, &store_id), wait)?),
        "qdrant" => {
            let key = cfg
                .qdrant_api_key_env
                .as_deref()
                .and_then(crate::registry::key_from_env);
            Arc::new(QdrantIndex::connect(QdrantOptions {
                url: cfg.qdrant_url.clone(),
                collection: collection(cfg, &store_id),
                api_key: key,
                timeout: Duration::from_secs(30),
            })?)
        }
        other => return Err(unknown_backend(other)),
    };
    Ok(Memory::new(embedder, index))
}

fn edge_dir(paths: &Paths, store_id: &str) -> std::path::PathBuf {
    paths
        .data_dir
        .join("memory")
        .join(format!("edge-{store_id}"))
}

fn collection(cfg: &MemoryConfig, store_id: &str) -> String {
    format!("{}_{store_id}", cfg.collection)
}

fn unknown_backend(name: &str) -> Error {
    Error::InvalidInput(format!(
        "[memory] backend {name:?}: expected edge or qdrant"
    ))
}

/// Where the config puts the index, as `VectorIndex::describe` says it,
/// without opening it.
pub fn describe_index(paths: &Paths, cfg: &MemoryConfig, db: &Store) -> Result<String> {
    let store_id = db.store_id()?;
    match cfg.backend.as_str() {
        "edge" => Ok(EdgeIndex::describe_dir(&edge_dir(paths, &store_id))),
        "qdrant" => Ok(QdrantIndex::describe_at(
            &cfg.qdrant_url,
            &collection(cfg, &store_id),
        )),
        other => Err(unknown_backend(other)),
    }
}

/// The embedder the config asks for; cheap: a local model loads on its
/// first embedding.
pub fn embedder(
    paths: &Paths,
    cfg: &MemoryConfig,
    mode: Mode,
    registry: impl FnOnce() -> Result<Registry>,
) -> Result<Arc<dyn Embedder>> {
    let embedder: Arc<dyn Embedder> = match cfg.embedder.as_str() {
        "fastembed" => {
            let (dir, lib) = crate::memory::embed::asset_paths(paths, cfg);
            Arc::new(LazyFastEmbedder::new(&dir, &lib)?)
        }
        "openai" => {
            let registry = registry()?;
            let need = |what: &str| {
                Error::InvalidInput(format!(
                    "[memory] embedder = \"openai\" needs {what} in config.toml"
                ))
            };
            let name = cfg
                .openai_provider
                .as_deref()
                .ok_or_else(|| need("openai_provider"))?;
            let p = registry.provider(name).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "[memory] openai_provider {name:?} is not in {}",
                    registry.source
                ))
            })?;
            if !p.local && mode == Mode::Offline {
                return Err(Error::InvalidInput(format!(
                    "[memory] openai_provider {name:?} is an API provider and the mode is offline"
                )));
            }
            let model = cfg
                .openai_model
                .as_deref()
                .ok_or_else(|| need("openai_model"))?;
            let dim = cfg.openai_dim.ok_or_else(|| need("openai_dim"))?;
            Arc::new(OpenAiEmbedder::new(
                &p.base_url,
                model,
                p.api_key_env.clone(),
                dim,
                http_client(),
            ))
        }
        other => {
            return Err(Error::InvalidInput(format!(
                "[memory] embedder {other:?}: expected fastembed or openai"
            )));
        }
    };
    Ok(embedder)
}

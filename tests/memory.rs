//! Memory: the vector-index conformance suite (Qdrant Edge always, a Qdrant
//! server when QDRANT_URL is set), the real embedding model, summaries and
//! compaction through the real llama.cpp server, and context assembly.

use std::sync::Arc;
use std::time::Duration;

use llmclis::Error;
use llmclis::llm::caller::{Breakers, Caller};
use llmclis::memory::embed::{Embedder, FastEmbedder};
use llmclis::memory::vector::{
    EdgeIndex, Filter, IndexError, IndexInfo, PointMeta, QdrantIndex, QdrantOptions, VectorIndex,
};
use llmclis::memory::{CompactPolicy, Memory, Scope};
use llmclis::net::http_client;
use llmclis::registry::{Mode, Registry};
use llmclis::store::{NewTask, Store};

use crate::support::{Env, assets};

/// A unit vector pointing mostly along axis `i` of `dim`.
fn axis(i: usize, dim: usize, wobble: f32) -> Vec<f32> {
    let mut v = vec![wobble; dim];
    v[i % dim] = 1.0;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn meta(project_id: i64, task_id: Option<i64>, kind: &str) -> PointMeta {
    let level = match kind {
        "raw_interaction" => "raw",
        "project_summary" => "project",
        _ => "task",
    };
    PointMeta {
        project_id,
        task_id,
        kind: kind.into(),
        agent: "t".into(),
        level: level.into(),
        parent: None,
    }
}

/// A stage's roll-up: a task summary one level up the tree.
fn stage_meta(project_id: i64, task_id: i64) -> PointMeta {
    PointMeta {
        level: "stage".into(),
        ..meta(project_id, Some(task_id), "task_summary")
    }
}

const INFO: fn() -> IndexInfo = || IndexInfo::new("test-model", 8);

/// The behaviour every backend must have. `open` opens the same index
/// again (the previous handle is dropped first: Edge is one process's).
async fn conformance(open: &dyn Fn() -> Box<dyn VectorIndex>) {
    let info = INFO();
    let mut index = open();
    // Never created: holds nothing, and the first `ensure` creates it.
    assert_eq!(index.count(Filter::default()).await.unwrap(), 0);
    index.ensure(&info).await.unwrap();
    index.ensure(&info).await.unwrap();
    index
        .upsert(vec![
            (1, axis(0, 8, 0.0), meta(1, Some(10), "raw_interaction")),
            (2, axis(0, 8, 0.2), meta(1, Some(11), "task_summary")),
            (3, axis(1, 8, 0.0), meta(1, None, "design_doc")),
            (4, axis(0, 8, 0.0), meta(2, Some(20), "raw_interaction")),
        ])
        .await
        .unwrap();
    let p1 = |task: Option<i64>, kind: Option<&str>| Filter {
        project_id: Some(1),
        task_id: task,
        kind: kind.map(String::from),
        ..Default::default()
    };
    let hits = index
        .search(axis(0, 8, 0.0), p1(None, None), 10, false)
        .await
        .unwrap();
    let ids: Vec<u64> = hits.iter().map(|h| h.0).collect();
    assert_eq!(ids, [1, 2, 3], "nearest first, and no hit from project 2");
    assert!(hits[0].1 > 0.99 && hits[0].1 >= hits[1].1 && hits[1].1 > hits[2].1);
    let exact = index
        .search(axis(0, 8, 0.0), p1(None, None), 10, true)
        .await
        .unwrap();
    assert_eq!(exact.iter().map(|h| h.0).collect::<Vec<_>>(), ids);
    let only_task = index
        .search(axis(0, 8, 0.0), p1(Some(11), None), 10, false)
        .await
        .unwrap();
    assert_eq!(only_task.iter().map(|h| h.0).collect::<Vec<_>>(), [2]);
    let only_docs = index
        .search(axis(0, 8, 0.0), p1(None, Some("design_doc")), 10, false)
        .await
        .unwrap();
    assert_eq!(only_docs.iter().map(|h| h.0).collect::<Vec<_>>(), [3]);
    // The memory tree's fields: a level filter, and raw interactions left
    // out of a step's context.
    index
        .upsert(vec![(5, axis(0, 8, 0.1), stage_meta(1, 12))])
        .await
        .unwrap();
    let level = |l: &str| Filter {
        project_id: Some(1),
        level: Some(l.into()),
        ..Default::default()
    };
    let stage = index
        .search(axis(0, 8, 0.0), level("stage"), 10, false)
        .await
        .unwrap();
    assert_eq!(stage.iter().map(|h| h.0).collect::<Vec<_>>(), [5]);
    let raw = index
        .search(axis(0, 8, 0.0), level("raw"), 10, false)
        .await
        .unwrap();
    assert_eq!(raw.iter().map(|h| h.0).collect::<Vec<_>>(), [1]);
    let no_raw = Filter {
        project_id: Some(1),
        skip_raw: true,
        ..Default::default()
    };
    let mut summaries: Vec<u64> = index
        .search(axis(0, 8, 0.0), no_raw.clone(), 10, true)
        .await
        .unwrap()
        .iter()
        .map(|h| h.0)
        .collect();
    summaries.sort();
    assert_eq!(summaries, [2, 3, 5]);
    assert_eq!(index.count(no_raw).await.unwrap(), 3);
    index.delete(vec![5]).await.unwrap();
    let p2 = Filter {
        project_id: Some(2),
        ..Default::default()
    };
    assert_eq!(
        index
            .search(axis(0, 8, 0.0), p2.clone(), 10, false)
            .await
            .unwrap()
            .iter()
            .map(|h| h.0)
            .collect::<Vec<_>>(),
        [4]
    );
    assert_eq!(index.count(p1(None, None)).await.unwrap(), 3);
    assert_eq!(index.count(Filter::default()).await.unwrap(), 4);
    index.delete(vec![2]).await.unwrap();
    assert_eq!(index.count(p1(None, None)).await.unwrap(), 2);
    // An upsert of an existing id replaces it.
    index
        .upsert(vec![(3, axis(0, 8, 0.0), meta(1, None, "design_doc"))])
        .await
        .unwrap();
    assert_eq!(index.count(p1(None, None)).await.unwrap(), 2);

    // Another model or size: typed, both sizes named, the fix given.
    let err = index
        .ensure(&IndexInfo::new("other", 16))
        .await
        .unwrap_err();
    match &err {
        Error::Index(IndexError::Mismatch { found, want, .. }) => {
            assert_eq!((found.dim, want.dim), (8, 16), "{err}");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("memory reindex"), "{err}");
    // A vector of the wrong size is refused, sizes named; nothing is written.
    let err = index
        .upsert(vec![(9, vec![0.5; 4], meta(1, None, "design_doc"))])
        .await
        .unwrap_err();
    match &err {
        Error::Index(IndexError::Dimension { expected, got, .. }) => {
            assert_eq!((*expected, *got), (8, 4), "{err}");
        }
        other => panic!("expected a dimension error, got {other:?}"),
    }
    assert_eq!(index.count(Filter::default()).await.unwrap(), 3);

    // Batches past one request's worth all land.
    let many: Vec<_> = (100..1_300u64)
        .map(|i| {
            (
                i,
                axis(i as usize, 8, 0.1),
                meta(3, None, "raw_interaction"),
            )
        })
        .collect();
    index.upsert(many).await.unwrap();
    index.flush().await.unwrap();
    let p3 = Filter {
        project_id: Some(3),
        ..Default::default()
    };
    assert_eq!(index.count(p3.clone()).await.unwrap(), 1_200);

    // What was written survives a reopen.
    drop(index);
    index = open();
    index.ensure(&info).await.unwrap();
    assert_eq!(index.count(Filter::default()).await.unwrap(), 1_203);
    let hits = index
        .search(axis(0, 8, 0.0), p1(None, Some("design_doc")), 1, false)
        .await
        .unwrap();
    assert_eq!(hits[0].0, 3);
    assert!(hits[0].1 > 0.99, "the replaced point kept its new vector");

    // A rebuild that never finished is refused, to this handle and the next.
    index.reset(&info).await.unwrap();
    assert_eq!(index.count(Filter::default()).await.unwrap(), 0);
    let err = index.ensure(&info).await.unwrap_err();
    assert!(
        matches!(err, Error::Index(IndexError::Incomplete { .. })),
        "{err:?}"
    );
    drop(index);
    index = open();
    let err = index.ensure(&info).await.unwrap_err();
    assert!(err.to_string().contains("memory reindex"), "{err}");
    index.finish(&info).await.unwrap();
    index.ensure(&info).await.unwrap();

    // An index an older llmclis made (before the tree's fields) is named
    // as such, for the next catch-up to rebuild (`Memory::relayout`).
    let old = IndexInfo {
        layout: 1,
        ..info.clone()
    };
    index.reset(&old).await.unwrap();
    index.finish(&old).await.unwrap();
    drop(index);
    index = open();
    let err = index.ensure(&info).await.unwrap_err();
    assert!(
        matches!(err, Error::Index(IndexError::OldLayout { found: 1, .. })),
        "{err:?}"
    );
    index.reset(&info).await.unwrap();
    index.finish(&info).await.unwrap();
    index.ensure(&info).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_edge_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge");
    conformance(&|| Box::new(EdgeIndex::open(&path).unwrap())).await;
}

/// The same suite against a real Qdrant server (1.16 or newer) when
/// QDRANT_URL names its gRPC endpoint; README says how to run one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qdrant_server_passes_the_conformance_suite_when_one_is_given() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        crate::support::skipped(
            "QDRANT_URL is not set; the server backend's conformance run needs a Qdrant server",
        );
        return;
    };
    let collection = format!("llmclis_test_{}", std::process::id());
    let open = || -> Box<dyn VectorIndex> {
        Box::new(
            QdrantIndex::connect(QdrantOptions {
                url: url.clone(),
                collection: collection.clone(),
                api_key: std::env::var("QDRANT_API_KEY").ok(),
                timeout: Duration::from_secs(30),
            })
            .unwrap(),
        )
    };
    conformance(&open).await;
}

#[test]
fn an_edge_index_is_open_in_one_place_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge");
    let first = EdgeIndex::open(&path).unwrap();
    let err = EdgeIndex::open_waiting(&path, Duration::from_millis(100))
        .err()
        .expect("locked");
    assert!(
        err.to_string()
            .contains("in use by another llmclis process"),
        "{err}"
    );
    drop(first);
    EdgeIndex::open_waiting(&path, Duration::from_millis(100)).unwrap();
}

fn embedder() -> Option<Arc<FastEmbedder>> {
    let (dir, lib) = assets()?;
    Some(Arc::new(
        FastEmbedder::load(&dir, &lib).expect("the embedding model loads"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_model_finds_a_paraphrase_and_keeps_projects_apart() {
    let Some(emb) = embedder() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mem = Memory::new(
        emb.clone(),
        Arc::new(EdgeIndex::open(&dir.path().join("edge")).unwrap()),
    );
    let mut db = Store::open_in_memory().unwrap();
    let p = db.create_project("p", "", None, "t").unwrap().id;
    let q = db.create_project("q", "", None, "t").unwrap().id;
    let lease = mem
        .store_memory(
            &mut db,
            "The orchestrator claims tasks with a lease so two agents never work on the same one.",
            p,
            None,
            "raw_interaction",
            "t",
        )
        .await
        .unwrap();
    mem.store_memory(
        &mut db,
        "Bananas are a good source of potassium.",
        p,
        None,
        "raw_interaction",
        "t",
    )
    .await
    .unwrap();
    mem.store_memory(
        &mut db,
        "The invoice must be paid within thirty days.",
        p,
        None,
        "design_doc",
        "t",
    )
    .await
    .unwrap();
    let other = mem
        .store_memory(
            &mut db,
            "Leases keep two workers from taking the same job.",
            q,
            None,
            "raw_interaction",
            "t",
        )
        .await
        .unwrap();
    // The seed's round trip: store, query, found, and first.
    let hits = mem
        .query_memory(
            &db,
            "How do we stop agents from picking the same task twice?",
            &Scope::project(p),
            3,
        )
        .await
        .unwrap();
    assert_eq!(hits[0].record.id, lease.id, "{hits:#?}");
    assert!(
        hits[0].score > hits[1].score + 0.1,
        "the paraphrase ranks well above unrelated text: {hits:#?}"
    );
    assert!(
        hits.iter().all(|h| h.record.project_id == p),
        "no cross-project hit"
    );
    let theirs = mem
        .query_memory(&db, "lease", &Scope::project(q), 5)
        .await
        .unwrap();
    assert_eq!(
        theirs.iter().map(|h| h.record.id).collect::<Vec<_>>(),
        [other.id]
    );
    // Reindex rebuilds the same answers from SQLite.
    let before: Vec<i64> = hits.iter().map(|h| h.record.id).collect();
    assert_eq!(mem.reindex(&mut db, None).await.unwrap(), 4);
    let after = mem
        .query_memory(
            &db,
            "How do we stop agents from picking the same task twice?",
            &Scope::project(p),
            3,
        )
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|h| h.record.id).collect::<Vec<_>>(),
        before
    );
    // Vectors are unit length, as cosine search expects.
    let v = emb.embed(vec!["x".into()]).await.unwrap();
    let n: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((n - 1.0).abs() < 1e-3 && v[0].len() == 384);
}

#[test]
fn memories_survive_a_process_restart() {
    let Some((dir, lib)) = assets() else { return };
    let env = Env::new();
    let run = |args: &[&str]| {
        crate::support::Run::from(
            env.command()
                .args(args)
                .env("LLMCLIS_EMBEDDING_MODEL_DIR", &dir)
                .env("LLMCLIS_ONNXRUNTIME", &lib)
                .output()
                .unwrap(),
        )
    };
    run(&["project", "add", "p"]).assert_ok();
    run(&[
        "memory",
        "store",
        "--project-id",
        "1",
        "--type",
        "design_doc",
        "Qdrant Edge keeps the index in the data dir.",
    ])
    .assert_ok();
    let out = run(&[
        "--json",
        "memory",
        "query",
        "--project-id",
        "1",
        "where does the vector index live?",
    ]);
    out.assert_ok();
    let hits: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(hits[0]["id"], 1);
    assert_eq!(hits[0]["type"], "design_doc");
    let stats = run(&["--json", "memory", "stats"]);
    let s: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(
        (s["indexed"].as_u64(), s["dim"].as_u64()),
        (Some(1), Some(384))
    );
    run(&[
        "memory",
        "store",
        "--project-id",
        "1",
        "--type",
        "gossip",
        "x",
    ])
    .assert_err(2, &["unknown memory type \"gossip\""]);
    run(&["memory", "store", "--project-id", "9", "x"]).assert_err(2, &["no project with id 9"]);
}

#[test]
fn two_databases_never_share_an_index() {
    let Some((dir, lib)) = assets() else { return };
    let env = Env::new();
    let run = |db: &str, args: &[&str]| {
        crate::support::Run::from(
            env.command()
                .args(args)
                .env("LLMCLIS_DB", env.dir.path().join(db))
                .env("LLMCLIS_EMBEDDING_MODEL_DIR", &dir)
                .env("LLMCLIS_ONNXRUNTIME", &lib)
                .output()
                .unwrap(),
        )
    };
    run("a.db", &["project", "add", "p"]).assert_ok();
    run("b.db", &["project", "add", "p"]).assert_ok();
    run(
        "a.db",
        &[
            "memory",
            "store",
            "--project-id",
            "1",
            "alpha notes about leases",
        ],
    )
    .assert_ok();
    run(
        "b.db",
        &[
            "memory",
            "store",
            "--project-id",
            "1",
            "beta secret about bananas",
        ],
    )
    .assert_ok();
    let out = run(
        "a.db",
        &["--json", "memory", "query", "--project-id", "1", "bananas"],
    );
    let hits: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let texts: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["alpha notes about leases"],
        "b's memory must not reach a"
    );
}

#[test]
fn missing_assets_are_clear_errors_not_panics() {
    let env = Env::new();
    env.run(&["project", "add", "p"]).assert_ok();
    let store = |model_dir: &std::path::Path, lib: &std::path::Path| {
        crate::support::Run::from(
            env.command()
                .args(["memory", "store", "--project-id", "1", "x"])
                .env("LLMCLIS_EMBEDDING_MODEL_DIR", model_dir)
                .env("LLMCLIS_ONNXRUNTIME", lib)
                .output()
                .unwrap(),
        )
    };
    let nope = env.dir.path().join("nope.so");
    store(env.dir.path(), &nope).assert_err(1, &["model.onnx is missing", "llmclis assets fetch"]);
    // With the real model but no ONNX Runtime, or a file that is not one:
    // `ort` would panic; llmclis says what to do.
    if let Some((dir, _)) = assets() {
        store(&dir, &nope).assert_err(1, &["ONNX Runtime not found", "llmclis assets fetch"]);
        let fake = env.dir.path().join("libonnxruntime.so");
        std::fs::write(&fake, b"not a library").unwrap();
        store(&dir, &fake).assert_err(
            1,
            &[
                "could not be loaded as ONNX Runtime",
                "llmclis assets fetch",
            ],
        );
    }
}

fn summarizer_registry(url: &str) -> Registry {
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ temperature: 0.2, models: [smollm2-135m] }}\n"))
        .collect();
    Registry::parse(
        &format!(
            r#"providers:
  - {{ name: smol, kind: openai-compatible, flavour: llamacpp, base_url: "{url}", timeout_secs: 120, max_concurrency: 1, local: true }}
models:
  - {{ id: smollm2-135m, provider: smol, served_name: SmolLM2-135M-Instruct, context_window: 2048, max_output_tokens: 400 }}
roles:
{roles}rules:
  - {{ name: default, role: summarizer }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"#
        ),
        "summarizer.yaml",
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_rolls_raw_interactions_into_a_summary_through_the_real_server() {
    let Some(emb) = embedder() else { return };
    let _turn = crate::support::real_servers_lock();
    let Ok(url) = std::env::var("LLMCLIS_TEST_SMOLLM_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the llama.cpp test server is not"
        );
        crate::support::skipped("no llama.cpp test server for summaries");
        return;
    };
    let caller = Caller::new(
        Arc::new(summarizer_registry(&url)),
        http_client(),
        Arc::new(Breakers::new(3, Duration::from_secs(30))),
    );
    let dir = tempfile::tempdir().unwrap();
    let mem = Memory::new(
        emb,
        Arc::new(EdgeIndex::open(&dir.path().join("edge")).unwrap()),
    );
    let path = dir.path().join("km.db");
    let mut db = Store::open(&path).unwrap();
    let p = db.create_project("p", "", None, "t").unwrap().id;
    let t = db
        .create_task(
            NewTask {
                project_id: p,
                title: "Pick a vector store".into(),
                ..Default::default()
            },
            "t",
        )
        .unwrap()
        .id;
    for text in [
        "Compared Qdrant Edge and a Qdrant server for the memory index.",
        "Qdrant Edge runs in-process with no server; chose it as the default.",
        "A Qdrant server remains an option for teams on several machines.",
    ] {
        mem.store_memory(&mut db, text, p, Some(t), "raw_interaction", "coder")
            .await
            .unwrap();
    }
    let made = mem
        .compact(
            &mut db,
            &caller,
            Mode::Offline,
            Some(p),
            CompactPolicy {
                max_raw: 3,
                max_tokens: 100_000,
            },
            "summarizer",
        )
        .await
        .unwrap();
    assert_eq!(made.len(), 1);
    let summary = &made[0];
    assert_eq!(
        (summary.kind.as_str(), summary.task_id),
        ("task_summary", Some(t))
    );
    assert_eq!(summary.covers, [1, 2, 3]);
    assert!(summary.text.len() > 20, "{}", summary.text);
    let stats = mem.stats(&db, Some(p)).await.unwrap();
    assert_eq!(stats.compacted, 3);
    assert_eq!(
        (stats.indexed, stats.index_points),
        (1, Some(1)),
        "the raw interactions left the index; the summary is in it"
    );
    // Nothing was deleted from SQLite, and nothing can be.
    drop(db);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM memories", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4);
    assert!(conn.execute("DELETE FROM memories", []).is_err());
    assert!(conn.execute("UPDATE memories SET text = 'x'", []).is_err());
    // Compacting again does nothing: the raw ones are already rolled up.
    let mut db = Store::open(&path).unwrap();
    assert!(
        mem.compact(
            &mut db,
            &caller,
            Mode::Offline,
            Some(p),
            CompactPolicy {
                max_raw: 3,
                max_tokens: 100_000
            },
            "s"
        )
        .await
        .unwrap()
        .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_puts_summaries_first_and_keeps_to_the_budget() {
    let Some(emb) = embedder() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mem = Memory::new(
        emb,
        Arc::new(EdgeIndex::open(&dir.path().join("edge")).unwrap()),
    );
    let mut db = Store::open_in_memory().unwrap();
    let p = db.create_project("p", "", None, "t").unwrap().id;
    let parent = db
        .create_task(
            NewTask {
                project_id: p,
                title: "Memory layer".into(),
                ..Default::default()
            },
            "t",
        )
        .unwrap()
        .id;
    let task = db
        .create_task(
            NewTask {
                project_id: p,
                title: "Compaction of raw interactions".into(),
                parent_id: Some(parent),
                ..Default::default()
            },
            "t",
        )
        .unwrap()
        .id;
    let relevant = mem
        .store_memory(
            &mut db,
            "Compaction marks raw interactions instead of deleting them.",
            p,
            None,
            "design_doc",
            "t",
        )
        .await
        .unwrap();
    let proj = mem
        .store_memory(
            &mut db,
            "Project summary: llmclis keeps tasks and memory.",
            p,
            None,
            "project_summary",
            "t",
        )
        .await
        .unwrap();
    let par = mem
        .store_memory(
            &mut db,
            "Parent summary: the memory layer uses Qdrant Edge.",
            p,
            Some(parent),
            "task_summary",
            "t",
        )
        .await
        .unwrap();
    let ctx = mem.context(&db, task, 10_000, 3).await.unwrap();
    let ids: Vec<i64> = ctx.iter().map(|r| r.id).collect();
    assert_eq!(&ids[..3], &[proj.id, par.id, relevant.id], "{ctx:#?}");
    // A budget that fits only the first two.
    let budget = proj.tokens + par.tokens;
    let small = mem.context(&db, task, budget, 3).await.unwrap();
    assert_eq!(
        small.iter().map(|r| r.id).collect::<Vec<_>>(),
        [proj.id, par.id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_embedder_keeps_order_and_normalizes() {
    use llmclis::memory::embed::OpenAiEmbedder;
    let fake = crate::support::fake_llm::FakeLlm::start(vec![]).await;
    let emb = OpenAiEmbedder::new(&fake.url, "bge-small", None, 4, http_client());
    let v = emb.embed(vec!["a".into(), "abcd".into()]).await.unwrap();
    assert_eq!(v.len(), 2);
    let norm = |x: &Vec<f32>| x.iter().map(|y| y * y).sum::<f32>().sqrt();
    assert!((norm(&v[0]) - 1.0).abs() < 1e-5 && (norm(&v[1]) - 1.0).abs() < 1e-5);
    assert!(v[1][0] > v[0][0], "rows are put back in input order");
    let wrong = OpenAiEmbedder::new(&fake.url, "bge-small", None, 384, http_client());
    let err = wrong.embed(vec!["a".into()]).await.unwrap_err();
    assert!(err.to_string().contains("384 dimensions"), "{err}");
}

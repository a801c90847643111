//! The Qdrant server backend's faults, each the way the real server (or
//! the client's connection pool) presents it, from a scripted gRPC
//! endpoint; the real server's behaviour is the conformance suite's
//! (tests/memory.rs, QDRANT_URL). And a memory saved through the binary
//! while the server is down: kept in the database, indexed when it is back.

use std::collections::HashMap;
use std::time::Duration;

use llmclis::Error;
use llmclis::memory::vector::{
    Filter, IndexError, IndexInfo, PointMeta, QdrantIndex, QdrantOptions, VectorIndex,
};
use qdrant_client::qdrant;
use tonic::Code;

use crate::support::fake_qdrant::{FakeQdrant, Reply};

fn info() -> IndexInfo {
    IndexInfo::new("all-MiniLM-L6-v2", 8)
}

fn index(url: &str, key: Option<&str>) -> QdrantIndex {
    QdrantIndex::connect(QdrantOptions {
        url: url.into(),
        collection: "mem".into(),
        api_key: key.map(String::from),
        timeout: Duration::from_secs(2),
    })
    .unwrap()
}

/// What Qdrant answers `Collections/Get` for a collection llmclis made.
fn collection(dim: u64, model: &str, state: &str) -> Reply {
    collection_of_layout(dim, model, state, "tenant-keyword-2")
}

/// The same, made by an llmclis with another payload layout.
fn collection_of_layout(dim: u64, model: &str, state: &str, layout: &str) -> Reply {
    let params = qdrant::VectorParams {
        size: dim,
        distance: qdrant::Distance::Cosine as i32,
        ..Default::default()
    };
    let meta: HashMap<String, qdrant::Value> = HashMap::from([
        ("llmclis_model".to_string(), model.into()),
        ("llmclis_layout".to_string(), layout.into()),
        ("llmclis_state".to_string(), state.into()),
    ]);
    Reply::ok(qdrant::GetCollectionInfoResponse {
        result: Some(qdrant::CollectionInfo {
            status: qdrant::CollectionStatus::Green as i32,
            config: Some(qdrant::CollectionConfig {
                params: Some(qdrant::CollectionParams {
                    vectors_config: Some(qdrant::VectorsConfig {
                        config: Some(qdrant::vectors_config::Config::ParamsMap(
                            qdrant::VectorParamsMap {
                                map: HashMap::from([("text".to_string(), params)]),
                            },
                        )),
                    }),
                    ..Default::default()
                }),
                metadata: meta,
                ..Default::default()
            }),
            ..Default::default()
        }),
        time: 0.001,
    })
}

fn done() -> Reply {
    Reply::ok(qdrant::PointsOperationResponse {
        result: Some(qdrant::UpdateResult {
            operation_id: Some(1),
            status: qdrant::UpdateStatus::Completed as i32,
        }),
        ..Default::default()
    })
}

fn point() -> Vec<(u64, Vec<f32>, PointMeta)> {
    vec![(
        1,
        vec![0.5; 8],
        PointMeta {
            project_id: 7,
            task_id: Some(3),
            kind: "raw_interaction".into(),
            agent: "t".into(),
            level: "raw".into(),
            parent: Some(3),
        },
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_collection_is_created_with_project_id_as_its_tenant_index() {
    let q = FakeQdrant::start(&[
        (
            "Collections/Get",
            vec![
                Reply::status(Code::NotFound, "Not found: Collection `mem` doesn't exist!"),
                collection(8, "all-MiniLM-L6-v2", "complete"),
            ],
        ),
        (
            "Collections/Create",
            vec![Reply::ok(qdrant::CollectionOperationResponse {
                result: true,
                time: 0.01,
            })],
        ),
        ("Points/CreateFieldIndex", vec![done()]),
    ])
    .await;
    index(&q.url, None).ensure(&info()).await.unwrap();

    let made: Vec<qdrant::CreateCollection> = q.sent("Collections/Create");
    assert_eq!(made.len(), 1);
    let Some(qdrant::vectors_config::Config::ParamsMap(m)) = made[0]
        .vectors_config
        .as_ref()
        .and_then(|v| v.config.clone())
    else {
        panic!("named vectors expected: {:?}", made[0].vectors_config)
    };
    assert_eq!(m.map["text"].size, 8);
    assert_eq!(m.map["text"].distance, qdrant::Distance::Cosine as i32);
    assert!(made[0].metadata.contains_key("llmclis_model"));

    let fields: Vec<qdrant::CreateFieldIndexCollection> = q.sent("Points/CreateFieldIndex");
    let tenant = fields
        .iter()
        .find(|f| f.field_name == "project_id")
        .expect("project_id indexed");
    assert_eq!(tenant.field_type, Some(qdrant::FieldType::Keyword as i32));
    match tenant
        .field_index_params
        .as_ref()
        .and_then(|p| p.index_params.clone())
    {
        Some(qdrant::payload_index_params::IndexParams::KeywordIndexParams(k)) => {
            assert_eq!(k.is_tenant, Some(true), "{k:?}")
        }
        other => panic!("a keyword tenant index expected, got {other:?}"),
    }
    let names: Vec<&str> = fields.iter().map(|f| f.field_name.as_str()).collect();
    assert_eq!(names, ["project_id", "task_id", "type", "agent", "level"]);
    assert_eq!(
        made[0].metadata["llmclis_layout"],
        qdrant::Value::from("tenant-keyword-2"),
        "the layout with the memory tree's fields"
    );
    assert!(fields.iter().all(|f| f.wait == Some(true)));
}

/// A collection an older llmclis made (without the tree's `level` and
/// `parent`, or without the tenant index) is named as such, for the next
/// catch-up to rebuild from the database's vectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_layouts_collection_is_named_for_a_rebuild() {
    for (layout, found) in [(Some("tenant-keyword-1"), 1), (None, 0)] {
        let reply = match layout {
            Some(l) => collection_of_layout(8, "all-MiniLM-L6-v2", "complete", l),
            None => collection_of_layout(8, "all-MiniLM-L6-v2", "complete", ""),
        };
        let q = FakeQdrant::start(&[("Collections/Get", vec![reply])]).await;
        let err = index(&q.url, None).ensure(&info()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Index(IndexError::OldLayout { found: f, .. }) if *f == found),
            "{err:?}"
        );
        assert!(err.to_string().contains("older llmclis"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_models_collection_is_a_mismatch_naming_both_sizes() {
    let q = FakeQdrant::start(&[(
        "Collections/Get",
        vec![collection(384, "bge-small", "complete")],
    )])
    .await;
    let err = index(&q.url, None).ensure(&info()).await.unwrap_err();
    let Error::Index(IndexError::Mismatch { found, want, .. }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!((found.dim, want.dim), (384, 8));
    let text = err.to_string();
    assert!(
        text.contains("bge-small (384 dimensions)") && text.contains("(8 dimensions)"),
        "{text}"
    );
    assert!(text.contains("memory reindex"), "{text}");
    assert_eq!(err.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_of_the_wrong_size_is_a_dimension_error() {
    let q = FakeQdrant::start(&[(
        "Points/Upsert",
        vec![Reply::status(
            Code::InvalidArgument,
            "Wrong input: Vector dimension error: expected dim: 384, got 8",
        )],
    )])
    .await;
    let err = index(&q.url, None).upsert(point()).await.unwrap_err();
    let Error::Index(IndexError::Dimension { expected, got, .. }) = err else {
        panic!("{err:?}")
    };
    assert_eq!((expected, got), (384, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_says_which_setting_holds_it_and_the_key_is_sent() {
    let q = FakeQdrant::start(&[(
        "Points/Query",
        vec![Reply::status(
            Code::Unauthenticated,
            "Invalid API key or JWT",
        )],
    )])
    .await;
    let err = index(&q.url, Some("s3cret"))
        .search(vec![0.5; 8], Filter::default(), 5, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Index(IndexError::Unauthorized { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("qdrant_api_key_env"), "{err}");
    assert_eq!(q.keys(), [Some("s3cret".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_unavailable_shards_are_transient() {
    let q = FakeQdrant::start(&[
        (
            "Points/Upsert",
            vec![Reply::Status(
                Code::ResourceExhausted,
                "Rate limiting exceeded: Write rate limit exceeded".into(),
                vec![("retry-after", "3".into())],
            )],
        ),
        (
            "Points/Count",
            vec![Reply::status(
                Code::Unavailable,
                "Shard temporarily unavailable: no active replica",
            )],
        ),
    ])
    .await;
    let ix = index(&q.url, None);
    let err = ix.upsert(point()).await.unwrap_err();
    let Error::Index(e @ IndexError::Overloaded { retry_after, .. }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*retry_after, Some(3));
    assert!(e.is_transient());
    assert!(err.to_string().contains("retry after 3 s"), "{err}");
    let err = ix.count(Filter::default()).await.unwrap_err();
    let Error::Index(e @ IndexError::Unavailable { .. }) = &err else {
        panic!("{err:?}")
    };
    assert!(e.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_or_hung_is_unavailable_within_the_timeout() {
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let err = index(&dead, None).ensure(&info()).await.unwrap_err();
    assert!(
        matches!(err, Error::Index(IndexError::Unavailable { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("memories stay saved"), "{err}");

    let q = FakeQdrant::start(&[("Collections/Get", vec![Reply::Hang])]).await;
    let started = std::time::Instant::now();
    let err = index(&q.url, None).ensure(&info()).await.unwrap_err();
    assert!(
        matches!(err, Error::Index(IndexError::Unavailable { .. })),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebuild_is_refused_until_it_finishes() {
    let q = FakeQdrant::start(&[(
        "Collections/Get",
        vec![collection(8, "all-MiniLM-L6-v2", "building")],
    )])
    .await;
    let err = index(&q.url, None).ensure(&info()).await.unwrap_err();
    assert!(
        matches!(err, Error::Index(IndexError::Incomplete { .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_saved_while_the_server_is_down_is_kept_and_indexed_when_it_is_back() {
    let Some((dir, lib)) = crate::support::assets() else {
        return;
    };
    let env = crate::support::Env::new();
    let config = |url: &str| {
        std::fs::create_dir_all(env.config_dir()).unwrap();
        std::fs::write(
            env.config_dir().join("config.toml"),
            format!(
                "[memory]\nbackend = \"qdrant\"\nqdrant_url = {url:?}\nmodel_dir = {:?}\nonnxruntime = {:?}\n",
                dir.display().to_string(),
                lib.display().to_string()
            ),
        )
        .unwrap();
    };
    let run = |args: &[&str]| {
        let env = &env;
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            let mut c = env.command();
            c.args(&args);
            tokio::task::spawn_blocking(move || crate::support::Run::from(c.output().unwrap()))
                .await
                .unwrap()
        }
    };
    run(&["project", "add", "p"]).await.assert_ok();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    config(&dead);
    let saved = run(&[
        "memory",
        "store",
        "--project-id",
        "1",
        "The claim is a lease.",
    ])
    .await;
    saved.assert_ok();
    assert!(
        saved
            .stderr
            .contains("memory 1 is saved but not indexed yet")
            && saved.stderr.contains("not reachable"),
        "{}",
        saved.stderr
    );
    let stats = run(&["--json", "memory", "stats"]).await;
    let s: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(
        (s["unindexed"].as_i64(), s["indexed"].as_i64()),
        (Some(1), Some(0))
    );
    // A query says the server is down, as an error, not a crash.
    run(&["memory", "query", "--project-id", "1", "lease"])
        .await
        .assert_err(1, &["not reachable"]);

    // Back: the next command indexes what waited.
    let q = FakeQdrant::start(&[
        (
            "Collections/Get",
            vec![collection(384, "all-MiniLM-L6-v2-int8", "complete")],
        ),
        ("Points/Upsert", vec![done()]),
        (
            "Points/Count",
            vec![Reply::ok(qdrant::CountResponse {
                result: Some(qdrant::CountResult { count: 1 }),
                ..Default::default()
            })],
        ),
    ])
    .await;
    config(&q.url);
    run(&["memory", "stats", "--verify"]).await.assert_ok();
    let sent: Vec<qdrant::UpsertPoints> = q.sent("Points/Upsert");
    assert_eq!(sent.len(), 1, "one upsert of the waiting row");
    let p = &sent[0].points[0];
    assert_eq!(
        p.id.clone().and_then(|i| i.point_id_options),
        Some(qdrant::point_id::PointIdOptions::Num(1))
    );
    assert_eq!(
        p.payload["project_id"].kind,
        Some(qdrant::value::Kind::StringValue("1".into()))
    );
    let s: serde_json::Value =
        serde_json::from_str(&run(&["--json", "memory", "stats"]).await.stdout).unwrap();
    assert_eq!(
        (s["unindexed"].as_i64(), s["indexed"].as_i64()),
        (Some(0), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_another_process_created_first_is_used() {
    let q = FakeQdrant::start(&[
        (
            "Collections/Get",
            vec![
                Reply::status(Code::NotFound, "Not found: Collection `mem` doesn't exist!"),
                collection(8, "all-MiniLM-L6-v2", "complete"),
            ],
        ),
        (
            "Collections/Create",
            vec![Reply::status(
                Code::AlreadyExists,
                "Wrong input: Collection `mem` already exists!",
            )],
        ),
        ("Points/CreateFieldIndex", vec![done()]),
    ])
    .await;
    index(&q.url, None).ensure(&info()).await.unwrap();
    // A missing collection counts nothing rather than failing.
    let q = FakeQdrant::start(&[(
        "Points/Count",
        vec![Reply::status(
            Code::NotFound,
            "Not found: Collection `mem` doesn't exist!",
        )],
    )])
    .await;
    assert_eq!(
        index(&q.url, None).count(Filter::default()).await.unwrap(),
        0
    );
}

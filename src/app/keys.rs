//! The gateway's client keys (`llmclis keys`): made and shown once, listed
//! without their secret, revoked by name.

use crate::error::Result;
use crate::store::{ApiKey, NewKey, Store};

/// A key to make for a client of `llmclis serve`.
#[derive(Debug, Clone)]
pub struct AddKey {
    pub name: String,
    /// What the client may spend through the gateway, in USD.
    pub budget_usd: Option<f64>,
    pub requests_per_minute: Option<u32>,
}

pub fn add(ctx: &super::Context, db: &mut Store, req: AddKey) -> Result<NewKey> {
    db.add_key(
        &req.name,
        req.budget_usd,
        req.requests_per_minute,
        &ctx.agent,
    )
}

/// A key with what its client has spent so far.
#[derive(Debug, serde::Serialize)]
pub struct KeyRow {
    #[serde(flatten)]
    pub key: ApiKey,
    pub spent_usd: f64,
}

pub fn list(db: &Store) -> Result<Vec<KeyRow>> {
    db.keys()?
        .into_iter()
        .map(|key| {
            Ok(KeyRow {
                spent_usd: db.client_spend(&key.name)?,
                key,
            })
        })
        .collect()
}

pub fn revoke(db: &mut Store, name: &str) -> Result<ApiKey> {
    db.revoke_key(name)
}

/// The hash a key's secret is kept and looked up by (the secret itself is
/// never stored).
pub fn secret_hash(secret: &str) -> String {
    crate::store::key_hash(secret)
}

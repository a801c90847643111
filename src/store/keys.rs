//! The gateway's client keys (migration 0010): made once and shown once,
//! kept only as a SHA-256, revoked by a timestamp; and what each client has
//! spent, from its recorded model calls.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Store, now};
use crate::error::{Error, Result};

/// A client key as listed: never the key itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub budget_usd: Option<f64>,
    pub requests_per_minute: Option<u32>,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
}

/// What `add_key` made: the key, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct NewKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub secret: String,
}

const KEY_COLUMNS: &str =
    "id, name, prefix, budget_usd, requests_per_minute, created_at, created_by, revoked_at";

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        budget_usd: r.get(3)?,
        requests_per_minute: r.get::<_, Option<i64>>(4)?.map(|v| v as u32),
        created_at: r.get(5)?,
        created_by: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

/// The stored form of a key.
pub fn key_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 32 random bytes (256 bits) from the operating system's CSPRNG, hex,
/// behind a prefix that says what it is. Not `fastrand`: its 64 bits of
/// state would let one leaked key tell of the others.
fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        crate::Error::Internal(format!("the operating system gave no random bytes: {e}"))
    })?;
    let mut s = String::from("llmclis-");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

impl Store {
    /// Makes a key for a client. A name in use by a live key is refused.
    pub fn add_key(
        &mut self,
        name: &str,
        budget_usd: Option<f64>,
        requests_per_minute: Option<u32>,
        agent: &str,
    ) -> Result<NewKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::InvalidInput(format!(
                "key name {name:?}: use one word, like the client's name (continue, open-webui)"
            )));
        }
        if budget_usd.is_some_and(|b| b.is_nan() || b < 0.0) {
            return Err(Error::InvalidInput("--budget-usd must be 0 or more".into()));
        }
        if requests_per_minute == Some(0) {
            return Err(Error::InvalidInput("--rpm must be at least 1".into()));
        }
        let secret = new_secret()?;
        let prefix: String = secret.chars().take(12).collect();
        let ts = now();
        let id = self.write(|tx| {
            let live: Option<i64> = tx
                .query_row(
                    "SELECT id FROM api_keys WHERE name = ?1 AND revoked_at IS NULL",
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            if live.is_some() {
                return Err(Error::InvalidInput(format!(
                    "a key named {name:?} exists; revoke it first (`llmclis keys revoke {name}`) or pick another name"
                )));
            }
            tx.prepare_cached(
                "INSERT INTO api_keys (name, key_hash, prefix, budget_usd, requests_per_minute,
                                       created_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                name,
                key_hash(&secret),
                prefix,
                budget_usd,
                requests_per_minute.map(i64::from),
                ts,
                agent
            ])?;
            Ok(tx.last_insert_rowid())
        })?;
        Ok(NewKey {
            key: ApiKey {
                id,
                name: name.to_string(),
                prefix,
                budget_usd,
                requests_per_minute,
                created_at: ts,
                created_by: agent.to_string(),
                revoked_at: None,
            },
            secret,
        })
    }

    /// Every key, live ones first.
    pub fn keys(&self) -> Result<Vec<ApiKey>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY revoked_at IS NOT NULL, name, id"
        ))?;
        let rows = stmt.query_map([], key_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The live key with this secret, if any.
    pub fn key_by_secret(&self, secret: &str) -> Result<Option<ApiKey>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL"
            ))?
            .query_row([key_hash(secret)], key_from_row)
            .optional()?)
    }

    /// Revokes the live key of that name.
    pub fn revoke_key(&mut self, name: &str) -> Result<ApiKey> {
        let ts = now();
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, ts],
            )?;
            if n == 0 {
                return Err(Error::InvalidInput(format!(
                    "no live key named {name:?}; `llmclis keys list` shows them"
                )));
            }
            Ok(tx.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE name = ?1 AND revoked_at = ?2"),
                params![name, ts],
                key_from_row,
            )?)
        })
    }

    /// What a gateway client's calls have cost, in USD.
    pub fn client_spend(&self, client: &str) -> Result<f64> {
        Ok(self.conn.query_row(
            "SELECT coalesce(sum(cost_usd), 0) FROM model_calls WHERE client = ?1",
            [client],
            |r| r.get(0),
        )?)
    }

    /// The most recent gateway calls, newest first.
    pub fn gateway_calls(&self, limit: usize) -> Result<Vec<super::ModelCall>> {
        super::runs::recent_client_calls(&self.conn, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_kept_hashed_found_by_its_secret_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("k.db")).unwrap();
        let made = s.add_key("continue", Some(5.0), Some(60), "me").unwrap();
        assert!(made.secret.starts_with("llmclis-") && made.secret.len() > 60);
        let stored: String = s
            .conn
            .query_row("SELECT key_hash FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, made.secret);
        assert_eq!(stored, key_hash(&made.secret));
        assert_eq!(
            s.key_by_secret(&made.secret).unwrap().unwrap().name,
            "continue"
        );
        assert!(s.key_by_secret("llmclis-wrong").unwrap().is_none());
        let e = s.add_key("continue", None, None, "me").unwrap_err();
        assert!(e.to_string().contains("revoke it first"), "{e}");
        assert!(s.revoke_key("continue").unwrap().revoked_at.is_some());
        assert!(s.key_by_secret(&made.secret).unwrap().is_none());
        // The name is free again; the old row stays for the record.
        s.add_key("continue", None, None, "me").unwrap();
        assert_eq!(s.keys().unwrap().len(), 2);
        assert!(s.revoke_key("nobody").is_err());
        assert!(s.add_key("two words", None, None, "me").is_err());
    }
}

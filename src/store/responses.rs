//! Responses API answers kept for `previous_response_id` (migration 0013):
//! the whole conversation each answered and its output, as the API's own
//! items, readable only by the client that made them.

use rusqlite::{OptionalExtension, params};

use super::{Store, now};
use crate::error::Result;

/// A kept answer: what it answered and what it said.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptResponse {
    pub id: String,
    pub model: String,
    /// Input items, a previous response's included (JSON array).
    pub input: String,
    /// Output items (JSON array).
    pub output: String,
    /// The response object as it was answered (JSON).
    pub body: String,
}

impl Store {
    /// Keeps an answer for `client`.
    pub fn keep_response(&mut self, client: &str, r: &KeptResponse) -> Result<()> {
        let ts = now();
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO responses (id, client, model, input, output, body, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                r.id, client, r.model, r.input, r.output, r.body, ts
            ])?;
            Ok(())
        })
    }

    /// `client`'s kept answer `id`, if there is one.
    pub fn kept_response(&self, client: &str, id: &str) -> Result<Option<KeptResponse>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, model, input, output, body FROM responses WHERE id = ?1 AND client = ?2",
            )?
            .query_row(params![id, client], |r| {
                Ok(KeptResponse {
                    id: r.get(0)?,
                    model: r.get(1)?,
                    input: r.get(2)?,
                    output: r.get(3)?,
                    body: r.get(4)?,
                })
            })
            .optional()?)
    }

    /// Forgets `client`'s kept answer `id`; whether there was one.
    pub fn forget_response(&mut self, client: &str, id: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM responses WHERE id = ?1 AND client = ?2",
                params![id, client],
            )? > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_response_is_read_back_only_by_its_client_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("r.db")).unwrap();
        let r = KeptResponse {
            id: "resp_1".into(),
            model: "m".into(),
            input: "[]".into(),
            output: "[]".into(),
            body: "{}".into(),
        };
        s.keep_response("a", &r).unwrap();
        assert_eq!(s.kept_response("a", "resp_1").unwrap(), Some(r));
        assert_eq!(s.kept_response("b", "resp_1").unwrap(), None);
        assert!(!s.forget_response("b", "resp_1").unwrap());
        assert!(s.forget_response("a", "resp_1").unwrap());
        assert_eq!(s.kept_response("a", "resp_1").unwrap(), None);
    }
}

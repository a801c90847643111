//! Memory rows in SQLite, the authority: saving (with or without a
//! vector), reading, counting, what the index lacks, what a killed run
//! left unsaved.

use super::*;

/// Counts from SQLite alone: by type, compacted, indexed and not. Opens
/// neither the index nor the model.
pub fn stats(
    db: &Store,
    project_id: Option<i64>,
    index: String,
    model: String,
    dim: usize,
) -> Result<Stats> {
    if let Some(p) = project_id {
        db.project(p)?;
    }
    let mut by_type = std::collections::BTreeMap::new();
    let mut stmt = db.conn().prepare(
        "SELECT type, count(*) FROM memories WHERE (?1 IS NULL OR project_id = ?1) GROUP BY type ORDER BY type",
    )?;
    for row in stmt.query_map([project_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (k, n) = row?;
        by_type.insert(k, n);
    }
    let (compacted, indexed, unindexed): (i64, i64, i64) = db.conn().query_row(
        "SELECT coalesce(sum(compacted = 1), 0), coalesce(sum(indexed = 1), 0),
                coalesce(sum(indexed = 0 AND compacted = 0), 0)
           FROM memories WHERE (?1 IS NULL OR project_id = ?1)",
        [project_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(Stats {
        project_id,
        by_type,
        compacted,
        indexed,
        unindexed,
        index_points: None,
        index,
        model,
        dim,
    })
}

pub(super) const COLUMNS: &str =
    "id, project_id, task_id, type, agent, text, tokens, covers, compacted, created_at";

pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryRecord> {
    let covers: String = r.get(7)?;
    Ok(MemoryRecord {
        id: r.get(0)?,
        project_id: r.get(1)?,
        task_id: r.get(2)?,
        kind: r.get(3)?,
        agent: r.get(4)?,
        text: r.get(5)?,
        tokens: r.get::<_, i64>(6)? as u64,
        covers: serde_json::from_str(&covers).unwrap_or_default(),
        compacted: r.get::<_, i64>(8)? != 0,
        created_at: r.get(9)?,
    })
}

pub fn check_kind(kind: &str) -> Result<()> {
    if KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "unknown memory type {kind:?}: expected one of {}",
            KINDS.join(", ")
        )))
    }
}

#[allow(clippy::too_many_arguments)] // the record's fields
pub(super) fn insert(
    db: &mut Store,
    text: &str,
    project_id: i64,
    task_id: Option<i64>,
    kind: &str,
    agent: &str,
    covers: &[i64],
    vector: Option<&[f32]>,
) -> Result<MemoryRecord> {
    let id = db.batch(|s| {
        s.conn().execute(
            "INSERT INTO memories (project_id, task_id, type, agent, text, tokens, covers, created_at, vector)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                project_id,
                task_id,
                kind,
                agent,
                text,
                estimate_tokens(text) as i64,
                serde_json::to_string(covers).expect("ids serialize"),
                now(),
                vector.map(encode_vector),
            ],
        )?;
        Ok(s.conn().last_insert_rowid())
    })?;
    Ok(get(db, id)?.expect("just inserted"))
}

/// Saves a memory in SQLite only, not yet indexed: the orchestrator's path
/// (its indexer, or the next process that opens the index, embeds and
/// indexes it off the step's path), and the path when no index can be
/// opened (another process holds the Edge store, the embedding assets are
/// missing).
pub fn save_unindexed(
    db: &mut Store,
    text: &str,
    project_id: i64,
    task_id: Option<i64>,
    kind: &str,
    agent: &str,
) -> Result<MemoryRecord> {
    save(db, text, project_id, task_id, kind, agent, &[], None)
}

/// Saves a memory whose vector is already known (embedded elsewhere, or
/// imported), not yet indexed: the next catch-up indexes it without
/// embedding it again.
#[allow(clippy::too_many_arguments)] // the record's fields, and its vector
pub fn save_embedded(
    db: &mut Store,
    text: &str,
    project_id: i64,
    task_id: Option<i64>,
    kind: &str,
    agent: &str,
    vector: &[f32],
) -> Result<MemoryRecord> {
    save(
        db,
        text,
        project_id,
        task_id,
        kind,
        agent,
        &[],
        Some(vector),
    )
}

#[allow(clippy::too_many_arguments)] // the record's fields, and its vector
pub(super) fn save(
    db: &mut Store,
    text: &str,
    project_id: i64,
    task_id: Option<i64>,
    kind: &str,
    agent: &str,
    covers: &[i64],
    vector: Option<&[f32]>,
) -> Result<MemoryRecord> {
    check_new(text, kind)?;
    insert(db, text, project_id, task_id, kind, agent, covers, vector)
}

/// What every new memory must be: of a known kind, with some text.
pub(super) fn check_new(text: &str, kind: &str) -> Result<()> {
    check_kind(kind)?;
    if text.trim().is_empty() {
        return Err(Error::InvalidInput("a memory needs some text".into()));
    }
    Ok(())
}

/// Whether memory `id` is in the index (as far as the store knows).
pub fn is_indexed(db: &Store, id: i64) -> Result<bool> {
    Ok(db
        .conn()
        .query_row("SELECT indexed FROM memories WHERE id = ?1", [id], |r| {
            r.get::<_, bool>(0)
        })?)
}

/// Rows the index lacks, plus compacted rows it still has: what the next
/// catch-up will do.
pub fn index_backlog(db: &Store) -> Result<i64> {
    Ok(db.conn().query_row(
        "SELECT (SELECT count(*) FROM memories WHERE indexed = 0 AND compacted = 0)
              + (SELECT count(*) FROM memories WHERE indexed = 1 AND compacted = 1)",
        [],
        |r| r.get(0),
    )?)
}

pub(super) fn mark_indexed(db: &mut Store, ids: &[i64], indexed: bool) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    db.batch(|s| {
        let mut stmt = s
            .conn()
            .prepare_cached("UPDATE memories SET indexed = ?2 WHERE id = ?1")?;
        for id in ids {
            stmt.execute(params![id, indexed as i64])?;
        }
        Ok(())
    })
}

/// A vector as stored with its row: little-endian f32s.
pub(super) fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn decode_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A done task that lacks what its step should have left in memory (the
/// process was killed between the step's commit and its memories).
#[derive(Debug, Clone, Serialize)]
pub struct MissingMemory {
    pub task_id: i64,
    pub project_id: i64,
    /// The step that finished it (its answer is in the step's record).
    pub step_id: i64,
    pub raw_interaction: bool,
    pub task_summary: bool,
    /// A done parent whose roll-up summary (from its subtasks') is missing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rollup: bool,
}

/// Done tasks whose finishing step answered with a model but that have no
/// raw interaction or no task summary in memory.
pub fn missing_memories(db: &Store, project_id: Option<i64>) -> Result<Vec<MissingMemory>> {
    let mut stmt = db.conn().prepare_cached(
        "SELECT t.id, t.project_id, s.id,
                NOT EXISTS (SELECT 1 FROM memories m WHERE m.task_id = t.id AND m.type = 'raw_interaction'),
                NOT EXISTS (SELECT 1 FROM memories m WHERE m.task_id = t.id AND m.type = 'task_summary')
           FROM tasks t
           JOIN run_steps s ON s.id = (SELECT max(id) FROM run_steps
                                        WHERE task_id = t.id AND outcome = 'done')
          WHERE t.status = 'done' AND t.deleted_at IS NULL AND s.model IS NOT NULL
            AND (?1 IS NULL OR t.project_id = ?1)
            AND (NOT EXISTS (SELECT 1 FROM memories m WHERE m.task_id = t.id AND m.type = 'raw_interaction')
              OR NOT EXISTS (SELECT 1 FROM memories m WHERE m.task_id = t.id AND m.type = 'task_summary'))
          ORDER BY t.id",
    )?;
    let rows = stmt
        .query_map([project_id], |r| {
            Ok(MissingMemory {
                task_id: r.get(0)?,
                project_id: r.get(1)?,
                step_id: r.get(2)?,
                raw_interaction: r.get(3)?,
                task_summary: r.get(4)?,
                rollup: false,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn get(db: &Store, id: i64) -> Result<Option<MemoryRecord>> {
    Ok(db
        .conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM memories WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}

/// A task's memories, oldest first.
pub fn for_task(db: &Store, task_id: i64) -> Result<Vec<MemoryRecord>> {
    records(db, "task_id = ?1", task_id)
}

pub(super) fn records(db: &Store, filter: &str, arg: i64) -> Result<Vec<MemoryRecord>> {
    let mut stmt = db.conn().prepare(&format!(
        "SELECT {COLUMNS} FROM memories WHERE {filter} ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([arg], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

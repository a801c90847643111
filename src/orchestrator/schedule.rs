//! The next-task rule as a pure function over a snapshot of a project.
//!
//! The store answers the same question with an indexed query
//! (`Store::next_task`); a property test keeps the two in agreement. This
//! version serves dry runs, which simulate completions without writing.

use std::collections::{BTreeMap, HashMap};

use crate::store::{Status, Task};

#[derive(Debug, Clone)]
pub struct Node {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub status: Status,
    pub priority: i64,
    pub depends_on: Vec<i64>,
}

impl Node {
    pub fn from_task(t: &Task) -> Node {
        Node {
            id: t.id,
            parent_id: t.parent_id,
            status: t.status,
            priority: t.priority,
            depends_on: t.depends_on.clone(),
        }
    }
}

/// A project's tasks with their links, in id order.
#[derive(Debug, Clone, Default)]
pub struct Board {
    nodes: BTreeMap<i64, Node>,
    children: HashMap<i64, Vec<i64>>,
}

impl Board {
    pub fn new(nodes: impl IntoIterator<Item = Node>) -> Board {
        let mut board = Board::default();
        for n in nodes {
            if let Some(p) = n.parent_id {
                board.children.entry(p).or_default().push(n.id);
            }
            board.nodes.insert(n.id, n);
        }
        board
    }

    fn status(&self, id: i64) -> Option<Status> {
        self.nodes.get(&id).map(|n| n.status)
    }

    /// Pending, every dependency and every subtask done, parent not blocked.
    pub fn is_ready(&self, n: &Node) -> bool {
        n.status == Status::Pending
            && n.depends_on
                .iter()
                .all(|d| self.status(*d) == Some(Status::Done))
            && self
                .children
                .get(&n.id)
                .is_none_or(|c| c.iter().all(|c| self.status(*c) == Some(Status::Done)))
            && n.parent_id.and_then(|p| self.status(p)) != Some(Status::Blocked)
    }

    /// Subtasks of in-progress parents first, then higher priority, then
    /// fewer dependencies, then the lowest id.
    pub fn pick_next(&self) -> Option<i64> {
        self.nodes
            .values()
            .filter(|n| self.is_ready(n))
            .min_by_key(|n| {
                let focused = n.parent_id.and_then(|p| self.status(p)) == Some(Status::InProgress);
                (!focused, -n.priority, n.depends_on.len(), n.id)
            })
            .map(|n| n.id)
    }

    /// Simulates the task's completion.
    pub fn complete(&mut self, id: i64) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.status = Status::Done;
        }
    }

    pub fn pending(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.status == Status::Pending)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: i64, status: Status, priority: i64, deps: &[i64], parent: Option<i64>) -> Node {
        Node {
            id,
            parent_id: parent,
            status,
            priority,
            depends_on: deps.to_vec(),
        }
    }

    #[test]
    fn a_parent_waits_for_its_subtasks() {
        let mut b = Board::new([
            node(1, Status::Pending, 2, &[], None),
            node(2, Status::Pending, 2, &[], Some(1)),
        ]);
        assert_eq!(b.pick_next(), Some(2));
        b.complete(2);
        assert_eq!(b.pick_next(), Some(1));
    }

    #[test]
    fn ties_break_on_dependency_count_then_id() {
        let b = Board::new([
            node(1, Status::Done, 2, &[], None),
            node(2, Status::Pending, 2, &[1], None),
            node(3, Status::Pending, 2, &[], None),
            node(4, Status::Pending, 2, &[], None),
        ]);
        assert_eq!(b.pick_next(), Some(3));
    }
}

//! The roles a task can hint at and the router maps to model chains.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

// The registry's `roles:` section maps each role to a chain of models.
/// A role: the kind of work a model does for a step.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Planner,
    Coder,
    Tester,
    Critic,
    Researcher,
    Writer,
    Summarizer,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Planner,
        Role::Coder,
        Role::Tester,
        Role::Critic,
        Role::Researcher,
        Role::Writer,
        Role::Summarizer,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Planner => "planner",
            Role::Coder => "coder",
            Role::Tester => "tester",
            Role::Critic => "critic",
            Role::Researcher => "researcher",
            Role::Writer => "writer",
            Role::Summarizer => "summarizer",
        }
    }

    /// The names, for messages: "planner, coder, …".
    pub fn names() -> String {
        Role::ALL.map(Role::as_str).join(", ")
    }

    /// Whether the step runs the codebase tool loop in this role.
    pub fn uses_tools(self) -> bool {
        matches!(self, Role::Coder | Role::Tester)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// So a test or a message can compare with a name.
impl PartialEq<&str> for Role {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Role, Error> {
        let wanted = s.trim().to_ascii_lowercase();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown role {s:?}: expected one of {}",
                    Role::names()
                ))
            })
    }
}

impl rusqlite::types::ToSql for Role {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_reads_back_from_its_name() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert!(" Coder ".parse::<Role>().is_ok());
        let e = "boss".parse::<Role>().unwrap_err().to_string();
        assert!(e.contains("planner, coder"), "{e}");
    }
}

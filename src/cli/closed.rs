//! Closed sets on the command line: a value parser that lists the names in
//! `--help` and completions, and keeps the library's one-line error for a
//! wrong one (`invalid status "finished": expected one of …`).

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::str::FromStr;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;

use crate::error::Error;

pub struct Closed<T> {
    names: &'static [&'static str],
    of: PhantomData<fn() -> T>,
}

impl<T> Clone for Closed<T> {
    fn clone(&self) -> Self {
        Closed {
            names: self.names,
            of: PhantomData,
        }
    }
}

/// A parser for `T` whose values are `names`.
pub fn closed<T>(names: &'static [&'static str]) -> Closed<T> {
    Closed {
        names,
        of: PhantomData,
    }
}

impl<T> TypedValueParser for Closed<T>
where
    T: FromStr<Err = Error> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        text.parse::<T>()
            .map_err(|e| clap::Error::raw(ErrorKind::InvalidValue, format!("{e}\n")))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.names.iter().map(|n| PossibleValue::new(*n))))
    }
}

/// A memory type (`memory store|query --type`), checked like the library
/// checks it.
#[derive(Debug, Clone)]
pub struct MemoryType(pub String);

impl FromStr for MemoryType {
    type Err = Error;

    fn from_str(s: &str) -> Result<MemoryType, Error> {
        crate::app::types::check_kind(s)?;
        Ok(MemoryType(s.to_string()))
    }
}

/// Task statuses as typed on the command line.
pub const STATUSES: [&str; 4] = ["pending", "in-progress", "done", "blocked"];

/// A role, or `none` (for `task edit --role`).
pub const ROLES_OR_NONE: [&str; 8] = [
    "planner",
    "coder",
    "tester",
    "critic",
    "researcher",
    "writer",
    "summarizer",
    "none",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_libraries_own() {
        assert_eq!(
            STATUSES.to_vec(),
            crate::app::types::Status::ALL.map(|s| s.as_str()).to_vec()
        );
        assert_eq!(ROLES_OR_NONE[..7], crate::app::types::ROLES);
    }
}

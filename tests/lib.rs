//! All integration tests, in one binary (one link instead of one per file).

mod support;

mod cli;
mod concurrency;
mod schedule;
mod store;

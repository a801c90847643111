//! The data the front ends render and pass back, re-exported so that the
//! command line, the board, MCP and serve name the application layer alone
//! (`tests/layering.rs`). Values and pure helpers only: what does work
//! (the store's handle, a model caller, the memory layer) is reached
//! through `app`'s functions.

pub use crate::config::{Config, Paths, ServeConfig, agent_name};
pub use crate::docs::sync::FollowReport;
pub use crate::doctor::{Level as DoctorLevel, Report as DoctorReport};
pub use crate::first_run::{Outcome as FirstRunOutcome, Report as FirstRunReport};
pub use crate::llm::caller::{Attempt, CallFailed, CallOutcome};
pub use crate::llm::{ChatRequest, Health, LlmError, Message, StreamEvent, ToolCall, Usage};
pub use crate::memory::embed::MINILM;
pub use crate::memory::rollup::Tree as MemoryTree;
pub use crate::memory::{CompactPolicy, Hit, KINDS, LEVELS, Level, MemoryRecord, check_kind};
pub use crate::orchestrator::DryRun;
pub use crate::orchestrator::run::{Observer, Progress, Summary};
pub use crate::registry::{Device, Mode, ROLES, Registry, gib};
pub use crate::resources::control::Action as ResourceAction;
pub use crate::resources::{Fit, REFRESH, does_not_fit};
pub use crate::role::Role;
pub use crate::router::{TaskInfo, estimate_tokens};
pub use crate::store::{
    ApiKey, DaySpend, EvalResult, Event, KeptResponse, KeyLimits, KeyState, ModelCall, Note,
    Period, Project, RunStep, Status, StatusCounts, StepOutcome, Task, TaskPatch, ToolCallRecord,
    format_time, parse_priority,
};

//! The TUI's state and its rules: a key becomes an action, an action changes
//! the state and may ask the worker for a job; the worker's answers come back
//! as messages. No IO here, so key handling is tested directly.

use std::collections::VecDeque;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::TextArea;

use super::keys::{Action, KeyMap};
use crate::app::types::Health;
use crate::app::types::Hit;
use crate::app::types::{Progress, Summary};
use crate::app::types::{Project, Status, StatusCounts, Task};

pub const COLUMNS: [Status; 4] = [
    Status::Pending,
    Status::InProgress,
    Status::Blocked,
    Status::Done,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Board,
    Detail,
    Run,
    Models,
    Memory,
    Requests,
    Projects,
}

pub use crate::app::tasks::ProjectRow;

pub type DetailData = crate::app::board::TaskDetail;

#[derive(Debug, Clone)]
pub struct ProviderRow {
    pub name: String,
    pub base_url: String,
    pub local: bool,
    pub key_env: Option<String>,
    pub key_set: bool,
    pub health: Option<Health>,
}

#[derive(Debug, Clone)]
pub struct ModelRow {
    pub id: String,
    pub provider: String,
    pub served_name: String,
    pub context_window: u64,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ModelsData {
    pub source: String,
    pub mode: String,
    pub providers: Vec<ProviderRow>,
    pub models: Vec<ModelRow>,
    pub checking: bool,
    /// Memory per device, what each server holds, each model's fit: from
    /// the background watch, refreshed while the board runs.
    pub resources: Option<Box<crate::app::models::Resources>>,
}

/// The run panel: what the orchestrator running from the TUI reports.
#[derive(Debug, Clone, Default)]
pub struct RunPanel {
    pub running: bool,
    pub stopping: bool,
    /// The task, when the run is on one task.
    pub task: Option<i64>,
    pub lines: VecDeque<String>,
    /// The answer being streamed now.
    pub tokens: String,
    pub summary: Option<Summary>,
}

const RUN_LINES: usize = 500;

/// Work for the background worker; it answers with a `Msg`.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    LoadProjects,
    LoadBoard(i64),
    LoadDetail(i64),
    CreateTask {
        project_id: i64,
        form: FormValues,
    },
    UpdateTask {
        id: i64,
        form: FormValues,
    },
    SetStatus {
        id: i64,
        status: Status,
        note: Option<String>,
    },
    AddNote {
        id: i64,
        text: String,
    },
    Delete(i64),
    /// Apply a done task's proposed change to its project's tree.
    ApplyChange(i64),
    /// Send a done task's change back to pending.
    RejectChange(i64),
    StartRun {
        project_id: i64,
        task: Option<i64>,
    },
    StopRun,
    CheckModels,
    /// The gateway's latest calls, and again whenever the store changes.
    WatchRequests,
    SearchMemory {
        project_id: i64,
        query: String,
        /// Answers to older searches are dropped.
        seq: u64,
    },
    /// The project's memory tree, from the store.
    LoadMemoryTree(i64),
}

/// What the worker and the terminal send back.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Resize,
    Projects(Vec<ProjectRow>),
    Board {
        project: Project,
        tasks: Vec<Task>,
        counts: StatusCounts,
    },
    Detail(Box<DetailData>),
    /// A change went through; the text is for the status line.
    Saved(String),
    Error(String),
    Progress(Box<Progress>),
    RunEnded(Result<Summary, String>),
    Models(ModelsData),
    Resources(Box<crate::app::models::Resources>),
    Requests(Vec<crate::app::types::ModelCall>),
    MemoryHits {
        seq: u64,
        hits: Result<Vec<Hit>, String>,
    },
    MemoryTree(Box<crate::app::types::MemoryTree>),
    /// The terminal stopped giving keys: the board closes.
    InputClosed(String),
}

/// The task form's values, as typed.
pub type FormValues = crate::app::board::Form;

pub const FORM_FIELDS: [&str; 5] = ["Title", "Description", "Priority", "Depends on", "Tags"];

pub struct TaskForm {
    /// The task being edited; `None` adds one.
    pub editing: Option<i64>,
    pub fields: Vec<TextArea<'static>>,
    pub focus: usize,
    pub error: Option<String>,
    /// Sent to the worker; the form closes when it is saved and stays,
    /// with the error, when it is not.
    pub saving: bool,
}

impl TaskForm {
    fn new(task: Option<&Task>) -> TaskForm {
        let values = match task {
            Some(t) => vec![
                t.title.clone(),
                t.description.clone(),
                t.priority.to_string(),
                t.depends_on
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                t.tags.join(", "),
            ],
            None => vec![
                String::new(),
                String::new(),
                "medium".into(),
                String::new(),
                String::new(),
            ],
        };
        let fields = values
            .into_iter()
            .map(|v| {
                let mut ta = TextArea::new(v.lines().map(str::to_string).collect());
                ta.move_cursor(ratatui_textarea::CursorMove::Bottom);
                ta.move_cursor(ratatui_textarea::CursorMove::End);
                ta
            })
            .collect();
        TaskForm {
            editing: task.map(|t| t.id),
            fields,
            focus: 0,
            error: None,
            saving: false,
        }
    }

    fn text(&self, i: usize) -> String {
        self.fields[i].lines().join("\n").trim().to_string()
    }

    /// The values, or what is wrong with them.
    pub fn values(&self) -> Result<FormValues, String> {
        let title = self.text(0);
        if title.is_empty() {
            return Err("a task needs a title".into());
        }
        let priority = match self.text(2) {
            p if p.is_empty() => None,
            p => Some(crate::app::types::parse_priority(&p).map_err(|e| e.to_string())?),
        };
        let mut depends_on = Vec::new();
        for part in self
            .text(3)
            .split([',', ' '])
            .filter(|p| !p.trim().is_empty())
        {
            let id = part
                .trim()
                .trim_start_matches('#')
                .parse::<i64>()
                .map_err(|_| format!("depends on: {part:?} is not a task id"))?;
            depends_on.push(id);
        }
        let tags = self
            .text(4)
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        Ok(FormValues {
            title,
            description: self.text(1),
            priority,
            depends_on,
            tags,
        })
    }
}

pub struct StatusPick {
    pub task: i64,
    pub selected: usize,
    pub note: TextArea<'static>,
    /// Typing goes to the note.
    pub in_note: bool,
}

pub enum Overlay {
    None,
    Help,
    Form(Box<TaskForm>),
    Note { task: i64, text: TextArea<'static> },
    Status(Box<StatusPick>),
    ConfirmDelete(i64),
    Filter(TextArea<'static>),
}

pub struct App {
    pub keys: KeyMap,
    pub color: bool,
    pub view: View,
    pub overlay: Overlay,
    pub projects: Vec<ProjectRow>,
    pub project_cursor: usize,
    pub project: Option<Project>,
    pub counts: StatusCounts,
    pub tasks: Vec<Task>,
    pub filter: String,
    pub column: usize,
    pub rows: [usize; 4],
    pub detail: DetailData,
    /// The task whose detail was asked for last; other answers are stale.
    pub detail_wanted: Option<i64>,
    pub detail_scroll: u16,
    pub run: RunPanel,
    pub models: ModelsData,
    /// The gateway's latest calls, newest first.
    pub requests: Vec<crate::app::types::ModelCall>,
    pub memory_query: TextArea<'static>,
    pub memory_hits: Vec<Hit>,
    pub memory_status: String,
    pub memory_seq: u64,
    /// The memory view's left side: project → stages → tasks.
    pub memory_tree: Option<Box<crate::app::types::MemoryTree>>,
    pub status_line: String,
    pub quit: bool,
}

fn single_line(placeholder: &str) -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_placeholder_text(placeholder.to_string());
    t
}

impl App {
    pub fn new(keys: KeyMap, color: bool) -> App {
        App {
            keys,
            color,
            view: View::Board,
            overlay: Overlay::None,
            projects: Vec::new(),
            project_cursor: 0,
            project: None,
            counts: StatusCounts::default(),
            tasks: Vec::new(),
            filter: String::new(),
            column: 0,
            rows: [0; 4],
            detail: DetailData::default(),
            detail_wanted: None,
            detail_scroll: 0,
            run: RunPanel::default(),
            models: ModelsData::default(),
            requests: Vec::new(),
            memory_query: single_line("what to look for, then enter"),
            memory_hits: Vec::new(),
            memory_status: String::new(),
            memory_seq: 0,
            memory_tree: None,
            status_line: String::new(),
            quit: false,
        }
    }

    /// The board's tasks in one column, filtered.
    pub fn column_tasks(&self, col: usize) -> Vec<&Task> {
        let f = self.filter.to_lowercase();
        self.tasks
            .iter()
            .filter(|t| t.status == COLUMNS[col])
            .filter(|t| {
                f.is_empty()
                    || t.title.to_lowercase().contains(&f)
                    || t.id.to_string() == f
                    || t.external_ref
                        .as_deref()
                        .is_some_and(|r| r.to_lowercase().contains(&f))
                    || t.tags.iter().any(|g| g.to_lowercase().contains(&f))
            })
            .collect()
    }

    pub fn selected(&self) -> Option<&Task> {
        let col = self.column_tasks(self.column);
        col.get(self.rows[self.column].min(col.len().saturating_sub(1)))
            .copied()
    }

    fn clamp_rows(&mut self) {
        for c in 0..4 {
            let n = self.column_tasks(c).len();
            self.rows[c] = self.rows[c].min(n.saturating_sub(1));
        }
    }

    /// Puts the cursor on a task (after a reload or a move between columns).
    fn select(&mut self, id: i64) {
        for c in 0..4 {
            if let Some(i) = self.column_tasks(c).iter().position(|t| t.id == id) {
                self.column = c;
                self.rows[c] = i;
                return;
            }
        }
    }

    pub fn on_msg(&mut self, msg: Msg) -> Vec<Job> {
        match msg {
            Msg::Key(k) => return self.on_key(k),
            Msg::Resize => {}
            Msg::Projects(p) => {
                self.projects = p;
                if let Some(cur) = &self.project {
                    self.project_cursor = self
                        .projects
                        .iter()
                        .position(|r| r.project.id == cur.id)
                        .unwrap_or(0);
                }
            }
            Msg::Board {
                project,
                tasks,
                counts,
            } => {
                let keep = self.selected().map(|t| t.id);
                let switched = self.project.as_ref().is_none_or(|p| p.id != project.id);
                self.project = Some(project);
                self.tasks = tasks;
                self.counts = counts;
                if switched {
                    self.rows = [0; 4];
                    self.column = 0;
                } else if let Some(id) = keep {
                    self.select(id);
                }
                self.clamp_rows();
                // The detail follows changes made elsewhere.
                if self.view == View::Detail
                    && let Some(t) = &self.detail.task
                {
                    return vec![Job::LoadDetail(t.id)];
                }
            }
            Msg::Detail(d) => {
                if d.task.as_ref().map(|t| t.id) == self.detail_wanted {
                    self.detail = *d;
                }
            }
            Msg::InputClosed(e) => {
                tracing::error!(error = %e, "keyboard input failed");
                self.quit = true;
            }
            Msg::Saved(text) => {
                self.status_line = text;
                if matches!(&self.overlay, Overlay::Form(f) if f.saving) {
                    self.overlay = Overlay::None;
                }
                let mut jobs = Vec::new();
                if let Some(p) = &self.project {
                    jobs.push(Job::LoadBoard(p.id));
                }
                if self.view == View::Detail
                    && let Some(t) = &self.detail.task
                {
                    jobs.push(Job::LoadDetail(t.id));
                }
                return jobs;
            }
            Msg::Error(e) => {
                if let Overlay::Form(f) = &mut self.overlay {
                    f.error = Some(e.clone());
                    f.saving = false;
                }
                self.models.checking = false;
                self.status_line = format!("error: {e}");
            }
            Msg::Progress(p) => self.on_progress(*p),
            Msg::RunEnded(r) => {
                self.run.running = false;
                self.run.stopping = false;
                match r {
                    Ok(s) => {
                        self.status_line = format!(
                            "run {} {}: {} done, {} blocked, {} split, {} released",
                            s.run_id, s.status, s.done, s.blocked, s.split, s.released
                        );
                        self.run.summary = Some(s);
                    }
                    Err(e) => {
                        self.push_run_line(format!("error: {e}"));
                        self.status_line = format!("run failed: {e}");
                    }
                }
                if let Some(p) = &self.project {
                    return vec![Job::LoadBoard(p.id)];
                }
            }
            Msg::Models(m) => {
                // A new health check keeps the last look at memory.
                let resources = self.models.resources.take();
                self.models = m;
                self.models.resources = self.models.resources.take().or(resources);
            }
            Msg::Resources(r) => self.models.resources = Some(r),
            Msg::Requests(r) => self.requests = r,
            Msg::MemoryHits { seq, hits } if seq == self.memory_seq => match hits {
                Ok(h) => {
                    self.memory_status = format!("{} hit(s)", h.len());
                    self.memory_hits = h;
                }
                Err(e) => self.memory_status = format!("error: {e}"),
            },
            Msg::MemoryHits { .. } => {}
            Msg::MemoryTree(t) => self.memory_tree = Some(t),
        }
        Vec::new()
    }

    fn push_run_line(&mut self, line: String) {
        if self.run.lines.len() == RUN_LINES {
            self.run.lines.pop_front();
        }
        self.run.lines.push_back(line);
    }

    fn on_progress(&mut self, p: Progress) {
        match &p {
            Progress::Token { text, .. } => {
                self.run.tokens.push_str(text);
                // Keep the tail: the panel shows the last lines.
                if self.run.tokens.len() > 8_000 {
                    let cut = self.run.tokens.len() - 6_000;
                    let cut = (cut..self.run.tokens.len())
                        .find(|i| self.run.tokens.is_char_boundary(*i))
                        .unwrap_or(0);
                    self.run.tokens.drain(..cut);
                }
                return;
            }
            Progress::StepStarted { .. } => self.run.tokens.clear(),
            _ => {}
        }
        let line = match &p {
            Progress::Warning { message } => Some(format!("warning: {message}")),
            other => crate::describe::progress(other),
        };
        if let Some(line) = line {
            for l in line.lines() {
                self.push_run_line(l.to_string());
            }
        }
    }

    fn open_detail(&mut self) -> Vec<Job> {
        match self.selected() {
            Some(t) => {
                let id = t.id;
                self.view = View::Detail;
                self.detail_scroll = 0;
                self.detail_wanted = Some(id);
                if self.detail.task.as_ref().is_none_or(|d| d.id != id) {
                    self.detail = DetailData::default();
                }
                vec![Job::LoadDetail(id)]
            }
            None => Vec::new(),
        }
    }

    /// The task the task actions act on: the detail's, or the board's cursor.
    fn target(&self) -> Option<&Task> {
        match self.view {
            View::Detail => self.detail.task.as_ref(),
            _ => self.selected(),
        }
        .filter(|t| t.deleted_at.is_none())
    }

    pub fn on_key(&mut self, ev: KeyEvent) -> Vec<Job> {
        match &mut self.overlay {
            Overlay::None => {}
            _ => return self.overlay_key(ev),
        }
        if self.view == View::Memory && !self.memory_editing_key(&ev) {
            return self.memory_key(ev);
        }
        let Some(action) = self.keys.action(&ev) else {
            return Vec::new();
        };
        self.act(action)
    }

    /// In the memory view, keys that are not text go to the key map.
    fn memory_editing_key(&self, ev: &KeyEvent) -> bool {
        matches!(ev.code, KeyCode::Esc | KeyCode::Up | KeyCode::Down)
            || ev.modifiers.contains(KeyModifiers::CONTROL)
    }

    fn memory_key(&mut self, ev: KeyEvent) -> Vec<Job> {
        if ev.code == KeyCode::Enter {
            let query = self.memory_query.lines().join(" ").trim().to_string();
            if let (false, Some(p)) = (query.is_empty(), &self.project) {
                self.memory_status = "searching…".into();
                self.memory_seq += 1;
                return vec![Job::SearchMemory {
                    project_id: p.id,
                    query,
                    seq: self.memory_seq,
                }];
            }
            return Vec::new();
        }
        self.memory_query.input(ev);
        Vec::new()
    }

    pub fn act(&mut self, action: Action) -> Vec<Job> {
        let project = self.project.as_ref().map(|p| p.id);
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.overlay = Overlay::Help,
            Action::Up => match self.view {
                View::Board => self.rows[self.column] = self.rows[self.column].saturating_sub(1),
                View::Detail => self.detail_scroll = self.detail_scroll.saturating_sub(1),
                View::Projects => self.project_cursor = self.project_cursor.saturating_sub(1),
                _ => {}
            },
            Action::Down => match self.view {
                View::Board => {
                    let n = self.column_tasks(self.column).len();
                    self.rows[self.column] = (self.rows[self.column] + 1).min(n.saturating_sub(1));
                }
                View::Detail => self.detail_scroll = self.detail_scroll.saturating_add(1),
                View::Projects => {
                    self.project_cursor =
                        (self.project_cursor + 1).min(self.projects.len().saturating_sub(1))
                }
                _ => {}
            },
            Action::Left if self.view == View::Board => self.column = self.column.saturating_sub(1),
            Action::Right if self.view == View::Board => self.column = (self.column + 1).min(3),
            Action::Top => match self.view {
                View::Board => self.rows[self.column] = 0,
                View::Detail => self.detail_scroll = 0,
                View::Projects => self.project_cursor = 0,
                _ => {}
            },
            Action::Bottom => match self.view {
                View::Board => {
                    self.rows[self.column] = self.column_tasks(self.column).len().saturating_sub(1)
                }
                View::Projects => self.project_cursor = self.projects.len().saturating_sub(1),
                _ => {}
            },
            Action::Open => match self.view {
                View::Board => return self.open_detail(),
                View::Projects => {
                    if let Some(r) = self.projects.get(self.project_cursor) {
                        let id = r.project.id;
                        self.view = View::Board;
                        self.filter.clear();
                        return vec![Job::LoadBoard(id)];
                    }
                }
                _ => {}
            },
            Action::Back => {
                if self.view == View::Board && !self.filter.is_empty() {
                    self.filter.clear();
                    self.clamp_rows();
                }
                self.view = View::Board;
            }
            Action::Board => self.view = View::Board,
            Action::RunPanel => self.view = View::Run,
            Action::Models => {
                self.view = View::Models;
                if !self.models.checking {
                    self.models.checking = true;
                    return vec![Job::CheckModels];
                }
            }
            Action::Memory => {
                self.view = View::Memory;
                if let Some(p) = project {
                    return vec![Job::LoadMemoryTree(p)];
                }
            }
            Action::Requests => {
                self.view = View::Requests;
                return vec![Job::WatchRequests];
            }
            Action::Projects => {
                self.view = View::Projects;
                return vec![Job::LoadProjects];
            }
            Action::Refresh => {
                let mut jobs = vec![Job::LoadProjects];
                if let Some(p) = project {
                    jobs.push(Job::LoadBoard(p));
                    if self.view == View::Memory {
                        jobs.push(Job::LoadMemoryTree(p));
                    }
                }
                if self.view == View::Detail
                    && let Some(t) = &self.detail.task
                {
                    jobs.push(Job::LoadDetail(t.id));
                }
                return jobs;
            }
            Action::Filter if self.view == View::Board => {
                let mut t = single_line("text in title, ref or tags; enter applies, esc clears");
                t.insert_str(&self.filter);
                self.overlay = Overlay::Filter(t);
            }
            Action::Add if project.is_some() => {
                self.overlay = Overlay::Form(Box::new(TaskForm::new(None)));
            }
            Action::Edit => {
                if let Some(t) = self.target() {
                    self.overlay = Overlay::Form(Box::new(TaskForm::new(Some(t))));
                }
            }
            Action::Note => {
                if let Some(t) = self.target() {
                    let id = t.id;
                    self.overlay = Overlay::Note {
                        task: id,
                        text: single_line("the note; enter saves, alt-enter for a new line"),
                    };
                }
            }
            Action::Status => {
                if let Some(t) = self.target() {
                    let selected = COLUMNS.iter().position(|s| *s == t.status).unwrap_or(0);
                    self.overlay = Overlay::Status(Box::new(StatusPick {
                        task: t.id,
                        selected,
                        note: single_line("optional note"),
                        in_note: false,
                    }));
                }
            }
            Action::Delete => {
                if let Some(t) = self.target() {
                    self.overlay = Overlay::ConfirmDelete(t.id);
                }
            }
            Action::ApplyChange | Action::RejectChange => match self.target() {
                Some(t) if t.status == Status::Done => {
                    return vec![if action == Action::ApplyChange {
                        Job::ApplyChange(t.id)
                    } else {
                        Job::RejectChange(t.id)
                    }];
                }
                Some(t) => {
                    self.status_line = format!(
                        "task {} is {}: only a done task has a change to apply or send back",
                        t.id, t.status
                    );
                }
                None => {}
            },
            Action::Run | Action::RunTask => {
                if self.run.running {
                    self.status_line = format!(
                        "a run is already going; {} stops it",
                        self.keys.hint(Action::Stop)
                    );
                    return Vec::new();
                }
                let Some(p) = project else { return Vec::new() };
                let task = if action == Action::RunTask {
                    match self.target() {
                        Some(t) if t.status == Status::Pending => Some(t.id),
                        Some(t) => {
                            self.status_line = format!(
                                "task {} is {}: only a pending task can run",
                                t.id,
                                t.status.as_str()
                            );
                            return Vec::new();
                        }
                        None => return Vec::new(),
                    }
                } else {
                    None
                };
                self.run = RunPanel {
                    running: true,
                    task,
                    ..Default::default()
                };
                self.view = View::Run;
                self.status_line = match task {
                    Some(t) => format!("running the orchestrator on task {t}"),
                    None => "running the orchestrator on the project".into(),
                };
                return vec![Job::StartRun {
                    project_id: p,
                    task,
                }];
            }
            Action::Stop if self.run.running && !self.run.stopping => {
                self.run.stopping = true;
                self.status_line = "stopping: the task in flight goes back to the queue".into();
                return vec![Job::StopRun];
            }
            _ => {}
        }
        Vec::new()
    }

    fn overlay_key(&mut self, ev: KeyEvent) -> Vec<Job> {
        let ctrl_s = ev.code == KeyCode::Char('s') && ev.modifiers.contains(KeyModifiers::CONTROL);
        let overlay = std::mem::replace(&mut self.overlay, Overlay::None);
        let (next, jobs) = match overlay {
            Overlay::None => (Overlay::None, Vec::new()),
            Overlay::Help => (Overlay::None, Vec::new()),
            Overlay::ConfirmDelete(id) => match ev.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    // The task leaves every list: back to the board.
                    self.view = View::Board;
                    (Overlay::None, vec![Job::Delete(id)])
                }
                _ => {
                    self.status_line = "not deleted".into();
                    (Overlay::None, Vec::new())
                }
            },
            Overlay::Filter(mut t) => match ev.code {
                KeyCode::Enter => {
                    self.filter = t.lines().join(" ").trim().to_string();
                    self.clamp_rows();
                    (Overlay::None, Vec::new())
                }
                KeyCode::Esc => {
                    self.filter.clear();
                    self.clamp_rows();
                    (Overlay::None, Vec::new())
                }
                _ => {
                    t.input(ev);
                    (Overlay::Filter(t), Vec::new())
                }
            },
            Overlay::Note { task, mut text } => match ev.code {
                KeyCode::Esc => (Overlay::None, Vec::new()),
                KeyCode::Enter if !ev.modifiers.contains(KeyModifiers::ALT) || ctrl_s => {
                    let body = text.lines().join("\n").trim().to_string();
                    if body.is_empty() {
                        (Overlay::Note { task, text }, Vec::new())
                    } else {
                        (
                            Overlay::None,
                            vec![Job::AddNote {
                                id: task,
                                text: body,
                            }],
                        )
                    }
                }
                KeyCode::Enter => {
                    text.insert_newline();
                    (Overlay::Note { task, text }, Vec::new())
                }
                _ => {
                    text.input(ev);
                    (Overlay::Note { task, text }, Vec::new())
                }
            },
            Overlay::Status(mut pick) => match ev.code {
                KeyCode::Esc => (Overlay::None, Vec::new()),
                KeyCode::Enter => {
                    let note = pick.note.lines().join("\n").trim().to_string();
                    (
                        Overlay::None,
                        vec![Job::SetStatus {
                            id: pick.task,
                            status: COLUMNS[pick.selected],
                            note: (!note.is_empty()).then_some(note),
                        }],
                    )
                }
                KeyCode::Tab | KeyCode::BackTab => {
                    pick.in_note = !pick.in_note;
                    (Overlay::Status(pick), Vec::new())
                }
                _ if pick.in_note => {
                    pick.note.input(ev);
                    (Overlay::Status(pick), Vec::new())
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    pick.selected = pick.selected.saturating_sub(1);
                    (Overlay::Status(pick), Vec::new())
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    pick.selected = (pick.selected + 1).min(COLUMNS.len() - 1);
                    (Overlay::Status(pick), Vec::new())
                }
                KeyCode::Char(c @ '1'..='4') => {
                    pick.selected = (c as usize) - ('1' as usize);
                    (Overlay::Status(pick), Vec::new())
                }
                _ => (Overlay::Status(pick), Vec::new()),
            },
            Overlay::Form(mut form) => {
                let last = FORM_FIELDS.len() - 1;
                match ev.code {
                    KeyCode::Esc => (Overlay::None, Vec::new()),
                    _ if ctrl_s => self.submit(form),
                    KeyCode::Tab | KeyCode::Down if ev.code == KeyCode::Tab || form.focus != 1 => {
                        form.focus = (form.focus + 1) % FORM_FIELDS.len();
                        (Overlay::Form(form), Vec::new())
                    }
                    KeyCode::BackTab | KeyCode::Up
                        if ev.code == KeyCode::BackTab || form.focus != 1 =>
                    {
                        form.focus = (form.focus + last) % FORM_FIELDS.len();
                        (Overlay::Form(form), Vec::new())
                    }
                    KeyCode::Enter if form.focus == 1 => {
                        form.fields[1].insert_newline();
                        (Overlay::Form(form), Vec::new())
                    }
                    KeyCode::Enter if form.focus == last => self.submit(form),
                    KeyCode::Enter => {
                        form.focus += 1;
                        (Overlay::Form(form), Vec::new())
                    }
                    _ => {
                        let f = form.focus;
                        form.fields[f].input(ev);
                        (Overlay::Form(form), Vec::new())
                    }
                }
            }
        };
        self.overlay = next;
        jobs
    }

    fn submit(&mut self, mut form: Box<TaskForm>) -> (Overlay, Vec<Job>) {
        match form.values() {
            Err(e) => {
                form.error = Some(e);
                (Overlay::Form(form), Vec::new())
            }
            Ok(values) => {
                let job = match (form.editing, &self.project) {
                    (Some(id), _) => Job::UpdateTask { id, form: values },
                    (None, Some(p)) => Job::CreateTask {
                        project_id: p.id,
                        form: values,
                    },
                    (None, None) => return (Overlay::None, Vec::new()),
                };
                form.saving = true;
                form.error = None;
                (Overlay::Form(form), vec![job])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn code(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    pub fn task(id: i64, title: &str, status: Status) -> Task {
        Task {
            id,
            project_id: 1,
            parent_id: None,
            external_ref: None,
            title: title.into(),
            description: String::new(),
            status,
            priority: 2,
            role: None,
            tags: vec![],
            depends_on: vec![],
            created_at: "2026-11-21T00:00:00.000Z".into(),
            created_by: "t".into(),
            updated_at: "2026-11-21T00:00:00.000Z".into(),
            last_agent: None,
            last_updated_at: None,
            claimed_by: None,
            lease_expires_at: None,
            attempts: 0,
            deleted_at: None,
            checks: vec![],
            protected: vec![],
            verified: None,
        }
    }

    fn app() -> App {
        let mut a = App::new(KeyMap::default(), false);
        a.on_msg(Msg::Board {
            project: Project {
                id: 1,
                name: "demo".into(),
                description: String::new(),
                root: None,
                plans_path: None,
                created_at: String::new(),
                created_by: String::new(),
                updated_at: String::new(),
            },
            tasks: vec![
                task(1, "Parse", Status::Pending),
                task(2, "Lex", Status::Pending),
                task(3, "Ship", Status::Done),
            ],
            counts: StatusCounts::default(),
        });
        a
    }

    #[test]
    fn a_done_tasks_change_is_applied_or_sent_back_by_its_keys() {
        let mut a = app();
        // Pending: nothing to apply, and the status line says why.
        assert!(a.on_key(key('A')).is_empty());
        assert!(
            a.status_line.contains("only a done task"),
            "{}",
            a.status_line
        );
        for _ in 0..3 {
            a.on_key(key('l'));
        }
        assert_eq!(a.selected().unwrap().id, 3);
        assert_eq!(a.on_key(key('A')), [Job::ApplyChange(3)]);
        assert_eq!(a.on_key(key('B')), [Job::RejectChange(3)]);
    }

    #[test]
    fn moving_opening_and_going_back() {
        let mut a = app();
        assert_eq!(a.selected().unwrap().id, 1);
        a.on_key(key('j'));
        assert_eq!(a.selected().unwrap().id, 2);
        a.on_key(key('j'));
        assert_eq!(a.selected().unwrap().id, 2, "stays on the last");
        a.on_key(key('g'));
        assert_eq!(a.selected().unwrap().id, 1);
        a.on_key(key('l'));
        assert!(a.selected().is_none(), "in progress is empty");
        a.on_key(key('l'));
        a.on_key(key('l'));
        assert_eq!(a.selected().unwrap().id, 3);
        assert_eq!(a.on_key(code(KeyCode::Enter)), [Job::LoadDetail(3)]);
        assert_eq!(a.view, View::Detail);
        a.on_key(code(KeyCode::Esc));
        assert_eq!(a.view, View::Board);
        a.on_key(key('q'));
        assert!(a.quit);
    }

    #[test]
    fn the_form_adds_a_task_and_says_what_is_wrong() {
        let mut a = app();
        a.on_key(key('a'));
        assert!(matches!(a.overlay, Overlay::Form(_)));
        // An empty title is refused in place.
        let ctrl_s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL);
        assert!(a.on_key(ctrl_s).is_empty());
        match &a.overlay {
            Overlay::Form(f) => assert_eq!(f.error.as_deref(), Some("a task needs a title")),
            _ => panic!("the form stays open"),
        }
        for c in "Write docs".chars() {
            a.on_key(key(c));
        }
        a.on_key(code(KeyCode::Tab));
        a.on_key(code(KeyCode::Tab));
        // Priority: replace "medium" with "high".
        for _ in 0..6 {
            a.on_key(code(KeyCode::Backspace));
        }
        for c in "high".chars() {
            a.on_key(key(c));
        }
        a.on_key(code(KeyCode::Enter));
        for c in "1, #2".chars() {
            a.on_key(key(c));
        }
        a.on_key(code(KeyCode::Enter));
        for c in "docs, v1".chars() {
            a.on_key(key(c));
        }
        let jobs = a.on_key(code(KeyCode::Enter));
        assert_eq!(
            jobs,
            [Job::CreateTask {
                project_id: 1,
                form: FormValues {
                    title: "Write docs".into(),
                    description: String::new(),
                    priority: Some(3),
                    depends_on: vec![1, 2],
                    tags: vec!["docs".into(), "v1".into()],
                }
            }]
        );
        assert!(
            matches!(&a.overlay, Overlay::Form(f) if f.saving),
            "open until saved"
        );
        a.on_msg(Msg::Saved("added task 4".into()));
        assert!(matches!(a.overlay, Overlay::None));
    }

    #[test]
    fn status_note_delete_and_filter() {
        let mut a = app();
        a.on_key(key('s'));
        a.on_key(key('j'));
        a.on_key(key('j'));
        a.on_key(code(KeyCode::Tab));
        for c in "needs a key".chars() {
            a.on_key(key(c));
        }
        assert_eq!(
            a.on_key(code(KeyCode::Enter)),
            [Job::SetStatus {
                id: 1,
                status: Status::Blocked,
                note: Some("needs a key".into())
            }]
        );
        a.on_key(key('n'));
        for c in "hi".chars() {
            a.on_key(key(c));
        }
        assert_eq!(
            a.on_key(code(KeyCode::Enter)),
            [Job::AddNote {
                id: 1,
                text: "hi".into()
            }]
        );
        a.on_key(key('D'));
        assert!(a.on_key(key('n')).is_empty(), "anything but y keeps it");
        a.on_key(key('D'));
        assert_eq!(a.on_key(key('y')), [Job::Delete(1)]);
        // A late detail for a task no longer asked for is dropped.
        a.on_key(code(KeyCode::Enter));
        a.on_msg(Msg::Detail(Box::new(DetailData {
            task: Some(task(2, "Lex", Status::Pending)),
            ..Default::default()
        })));
        assert!(a.detail.task.is_none());
        a.on_key(code(KeyCode::Esc));
        a.on_key(key('/'));
        for c in "lex".chars() {
            a.on_key(key(c));
        }
        a.on_key(code(KeyCode::Enter));
        assert_eq!(a.column_tasks(0).len(), 1);
        assert_eq!(a.selected().unwrap().id, 2);
        a.on_key(code(KeyCode::Esc));
        assert_eq!(a.column_tasks(0).len(), 2, "esc clears the filter");
    }

    #[test]
    fn runs_start_stop_and_report() {
        let mut a = app();
        assert_eq!(
            a.on_key(key('R')),
            [Job::StartRun {
                project_id: 1,
                task: Some(1)
            }]
        );
        assert_eq!(a.view, View::Run);
        assert!(a.on_key(key('r')).is_empty(), "one run at a time");
        a.on_msg(Msg::Progress(Box::new(Progress::Token {
            step: 1,
            task_id: 1,
            text: "fn main".into(),
        })));
        assert_eq!(a.run.tokens, "fn main");
        assert_eq!(a.on_key(key('x')), [Job::StopRun]);
        assert!(a.on_key(key('x')).is_empty());
        let jobs = a.on_msg(Msg::RunEnded(Err("no server".into())));
        assert!(!a.run.running);
        assert_eq!(jobs, [Job::LoadBoard(1)]);
    }

    #[test]
    fn a_reload_keeps_the_cursor_on_the_same_task() {
        let mut a = app();
        a.on_key(key('j'));
        let mut tasks = a.tasks.clone();
        tasks.insert(0, task(9, "Aaa new", Status::Pending));
        tasks.sort_by_key(|t| t.title.clone());
        let project = a.project.clone().unwrap();
        a.on_msg(Msg::Board {
            project,
            tasks,
            counts: StatusCounts::default(),
        });
        assert_eq!(a.selected().unwrap().id, 2);
    }
}

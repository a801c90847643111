//! Drawing: one function per view and overlay, over the app's state. Pure:
//! render tests draw into ratatui's `TestBackend`.

use crate::text::fit;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Clear, List, ListItem, ListState, Paragraph, Row, Table, Wrap,
};

use super::app::{App, COLUMNS, FORM_FIELDS, Overlay, View};
use super::keys::{Action, BINDINGS};
use crate::app::types::{Status, Task};

/// Colours, or none when NO_COLOR is set (modifiers still mark things).
struct Theme {
    color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn selected(&self) -> Style {
        if self.color {
            Style::new()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    fn status(&self, s: Status) -> Style {
        self.fg(match s {
            Status::Pending => Color::Yellow,
            Status::InProgress => Color::Cyan,
            Status::Blocked => Color::Red,
            Status::Done => Color::Green,
        })
    }

    fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    fn title(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn draw(f: &mut Frame<'_>, app: &App) {
    let theme = Theme { color: app.color };
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_header(f, header, app, &theme);
    match app.view {
        View::Board => draw_board(f, body, app, &theme),
        View::Detail => draw_detail(f, body, app, &theme),
        View::Run => draw_run(f, body, app, &theme),
        View::Models => draw_models(f, body, app, &theme),
        View::Memory => draw_memory(f, body, app, &theme),
        View::Requests => draw_requests(f, body, app, &theme),
        View::Projects => draw_projects(f, body, app, &theme),
    }
    draw_footer(f, footer, app, &theme);
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => draw_help(f, app, &theme),
        Overlay::Form(form) => {
            let area = centered(f.area(), 70, 20);
            f.render_widget(Clear, area);
            let title = match form.editing {
                Some(id) => format!(" Edit task {id} "),
                None => " Add a task ".to_string(),
            };
            let block = Block::bordered()
                .title(title)
                .title_bottom(" tab: next field · ctrl-s: save · esc: cancel ");
            let inner = block.inner(area);
            f.render_widget(block, area);
            let rows = Layout::vertical([
                Constraint::Length(3),
                Constraint::Min(3),
                Constraint::Length(3),
                Constraint::Length(3),
                Constraint::Length(3),
                Constraint::Length(1),
            ])
            .split(inner);
            for (i, name) in FORM_FIELDS.iter().enumerate() {
                let mut ta = form.fields[i].clone();
                let focused = form.focus == i;
                ta.set_block(Block::bordered().title(*name).border_style(if focused {
                    theme.title()
                } else {
                    theme.dim()
                }));
                if !focused {
                    ta.set_cursor_style(Style::new());
                }
                ta.set_cursor_line_style(Style::new());
                f.render_widget(&ta, rows[i]);
            }
            if let Some(e) = &form.error {
                f.render_widget(
                    Paragraph::new(Span::styled(
                        e.clone(),
                        theme.fg(Color::Red).add_modifier(Modifier::BOLD),
                    )),
                    rows[5],
                );
            }
        }
        Overlay::Note { task, text } => {
            let area = centered(f.area(), 60, 6);
            f.render_widget(Clear, area);
            let mut ta = text.clone();
            ta.set_block(
                Block::bordered()
                    .title(format!(" Note on task {task} "))
                    .title_bottom(" enter: save · alt-enter: new line · esc: cancel "),
            );
            f.render_widget(&ta, area);
        }
        Overlay::Status(pick) => {
            let area = centered(f.area(), 44, 11);
            f.render_widget(Clear, area);
            let block = Block::bordered()
                .title(format!(" Status of task {} ", pick.task))
                .title_bottom(" ↑↓ or 1-4 · tab: note · enter: apply · esc ");
            let inner = block.inner(area);
            f.render_widget(block, area);
            let [list, note] =
                Layout::vertical([Constraint::Length(5), Constraint::Length(3)]).areas(inner);
            let items: Vec<ListItem<'_>> = COLUMNS
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    ListItem::new(Line::from(vec![
                        Span::raw(format!(" {} ", i + 1)),
                        Span::styled(s.as_str(), theme.status(*s)),
                    ]))
                })
                .collect();
            let mut state = ListState::default().with_selected(Some(pick.selected));
            f.render_stateful_widget(
                List::new(items)
                    .highlight_style(theme.selected())
                    .highlight_symbol("▶"),
                list,
                &mut state,
            );
            let mut ta = pick.note.clone();
            ta.set_block(Block::bordered().title(if pick.in_note {
                "Note (typing)"
            } else {
                "Note"
            }));
            if !pick.in_note {
                ta.set_cursor_style(Style::new());
            }
            f.render_widget(&ta, note);
        }
        Overlay::ConfirmDelete(id) => {
            let area = centered(f.area(), 50, 5);
            f.render_widget(Clear, area);
            let title = app
                .tasks
                .iter()
                .find(|t| t.id == *id)
                .map(|t| t.title.clone())
                .unwrap_or_default();
            f.render_widget(
                Paragraph::new(vec![
                    Line::from(format!("Delete task {id}: {}?", fit(&title, 30))),
                    Line::styled(
                        "Its history is kept. y: delete · any other key: keep",
                        theme.dim(),
                    ),
                ])
                .block(Block::bordered().title(" Delete ")),
                area,
            );
        }
        Overlay::Filter(t) => {
            let area = Rect {
                x: f.area().x,
                y: f.area().bottom().saturating_sub(4),
                width: f.area().width,
                height: 3.min(f.area().height),
            };
            f.render_widget(Clear, area);
            let mut ta = t.clone();
            ta.set_block(Block::bordered().title(" Filter "));
            f.render_widget(&ta, area);
        }
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_header(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let tabs = [
        (View::Board, "1 Board"),
        (View::Run, "2 Run"),
        (View::Models, "3 Models"),
        (View::Memory, "4 Memory"),
        (View::Requests, "5 Requests"),
    ];
    let mut spans = vec![Span::styled("llmclis ", theme.title())];
    match &app.project {
        Some(p) => spans.push(Span::raw(format!("· {} ", fit(&p.name, 24)))),
        None => spans.push(Span::raw("· no project ")),
    }
    for (v, name) in tabs {
        let current = app.view == v || (v == View::Board && app.view == View::Detail);
        spans.push(Span::styled(
            format!("[{name}]"),
            if current {
                theme.selected()
            } else {
                theme.dim()
            },
        ));
        spans.push(Span::raw(" "));
    }
    if app.run.running {
        spans.push(Span::styled(
            if app.run.stopping {
                "● stopping"
            } else {
                "● running"
            },
            theme.fg(Color::Green).add_modifier(Modifier::BOLD),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_footer(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let hints = format!(
        "{} help · {} add · {} status · {} run · {} quit",
        app.keys.hint(Action::Help),
        app.keys.hint(Action::Add),
        app.keys.hint(Action::Status),
        app.keys.hint(Action::Run),
        app.keys.hint(Action::Quit)
    );
    let status = if app.status_line.is_empty() {
        let c = &app.counts;
        format!(
            "{} pending ({} ready) · {} in progress · {} blocked · {} done{}",
            c.pending,
            c.ready,
            c.in_progress,
            c.blocked,
            c.done,
            if app.filter.is_empty() {
                String::new()
            } else {
                format!(" · filter {:?}", app.filter)
            }
        )
    } else {
        app.status_line.clone()
    };
    let width = area.width as usize;
    let room = width.saturating_sub(hints.chars().count() + 1);
    let line = Line::from(vec![
        Span::raw(format!("{:<room$}", fit(&status, room))),
        Span::styled(format!(" {hints}"), theme.dim()),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

fn card<'a>(t: &Task, width: usize, theme: &Theme) -> ListItem<'a> {
    let id = match &t.external_ref {
        Some(r) => format!("#{} {r}", t.id),
        None => format!("#{}", t.id),
    };
    let mut second = vec![Span::styled(format!("P{}", t.priority), theme.dim())];
    if let Some(r) = &t.role {
        second.push(Span::raw(format!(" {r}")));
    }
    if !t.depends_on.is_empty() {
        second.push(Span::styled(
            format!(" ⛓{}", t.depends_on.len()),
            theme.fg(Color::Magenta),
        ));
    }
    if let Some(h) = &t.claimed_by {
        second.push(Span::styled(
            format!(" @{}", fit(h, width.saturating_sub(10).max(4))),
            theme.fg(Color::Cyan),
        ));
    }
    // Done: verified by its checks, or only by a model's word.
    match t.verified {
        Some(true) => second.push(Span::styled(" ✓ verified", theme.fg(Color::Green))),
        Some(false) => second.push(Span::styled(" unverified", theme.dim())),
        None if !t.checks.is_empty() => {
            second.push(Span::styled(" ☐ checked", theme.dim()));
        }
        None => {}
    }
    ListItem::new(Text::from(vec![
        Line::from(vec![
            Span::styled(id.clone(), theme.dim()),
            Span::raw(" "),
            Span::raw(fit(&t.title, width.saturating_sub(id.chars().count() + 1))),
        ]),
        Line::from(second),
    ]))
}

fn draw_board(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let cols = Layout::horizontal([Constraint::Ratio(1, 4); 4]).split(area);
    for (i, status) in COLUMNS.iter().enumerate() {
        let tasks = app.column_tasks(i);
        let focused = app.column == i;
        let block = Block::bordered()
            .title(Line::from(vec![
                Span::styled(
                    format!(" {} ", status.as_str()),
                    theme.status(*status).add_modifier(Modifier::BOLD),
                ),
                Span::styled(format!("{} ", tasks.len()), theme.dim()),
            ]))
            .border_style(if focused { theme.title() } else { theme.dim() });
        let inner_width = cols[i].width.saturating_sub(2) as usize;
        // Only the cards that can show are built: a column of 10,000 tasks
        // costs what a screenful does.
        let visible = (cols[i].height.saturating_sub(2) / 2).max(1) as usize;
        let cursor = app.rows[i].min(tasks.len().saturating_sub(1));
        let start = cursor.saturating_sub(visible - 1);
        let items: Vec<ListItem<'_>> = tasks
            .iter()
            .skip(start)
            .take(visible)
            .map(|t| card(t, inner_width, theme))
            .collect();
        let mut state = ListState::default();
        if focused && !tasks.is_empty() {
            state.select(Some(cursor - start));
        }
        f.render_stateful_widget(
            List::new(items)
                .block(block)
                .highlight_style(theme.selected()),
            cols[i],
            &mut state,
        );
    }
}

fn section<'a>(lines: &mut Vec<Line<'a>>, title: &str, theme: &Theme) {
    lines.push(Line::raw(""));
    lines.push(Line::styled(title.to_string(), theme.title()));
}

fn draw_detail(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let d = &app.detail;
    let Some(t) = &d.task else {
        f.render_widget(Paragraph::new("loading…").block(Block::bordered()), area);
        return;
    };
    let mut lines: Vec<Line<'_>> = Vec::new();
    lines.push(Line::from(vec![
        Span::styled(
            match t.verified {
                Some(true) => "done ✓ verified",
                Some(false) => "done (unverified)",
                None => t.status.as_str(),
            },
            theme.status(t.status).add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "  P{}  {}{}{}",
            t.priority,
            t.role.map(|r| format!("role {r}  ")).unwrap_or_default(),
            t.external_ref
                .as_deref()
                .map(|r| format!("ref {r}  "))
                .unwrap_or_default(),
            if t.tags.is_empty() {
                String::new()
            } else {
                format!("tags {}", t.tags.join(", "))
            }
        )),
    ]));
    if let Some(h) = &t.claimed_by {
        lines.push(Line::raw(format!(
            "claimed by {h}{}",
            t.lease_expires_at
                .as_deref()
                .map(|l| format!(" until {l}"))
                .unwrap_or_default()
        )));
    }
    if !t.description.is_empty() {
        lines.push(Line::raw(""));
        for l in t.description.lines() {
            lines.push(Line::raw(l.to_string()));
        }
    }
    if !t.depends_on.is_empty() || !d.subtasks.is_empty() || t.parent_id.is_some() {
        section(&mut lines, "Dependencies and subtasks", theme);
        if let Some(p) = t.parent_id {
            lines.push(Line::raw(format!("  part of #{p}")));
        }
        for dep in &t.depends_on {
            let state = app
                .tasks
                .iter()
                .find(|x| x.id == *dep)
                .map(|x| format!("{} {}", x.status.as_str(), x.title))
                .unwrap_or_default();
            lines.push(Line::raw(format!("  depends on #{dep} {state}")));
        }
        for s in &d.subtasks {
            lines.push(Line::from(vec![
                Span::raw(format!("  subtask #{} ", s.id)),
                Span::styled(s.status.as_str(), theme.status(s.status)),
                Span::raw(format!(" {}", s.title)),
            ]));
        }
    }
    if let Some(r) = &d.result {
        section(&mut lines, "Result", theme);
        for l in r.lines().take(40) {
            lines.push(Line::raw(format!("  {l}")));
        }
    }
    if let Some(diff) = &d.diff {
        section(&mut lines, "Diff", theme);
        for l in diff.lines().take(80) {
            let style = if l.starts_with('+') && !l.starts_with("+++") {
                theme.fg(Color::Green)
            } else if l.starts_with('-') && !l.starts_with("---") {
                theme.fg(Color::Red)
            } else {
                Style::new()
            };
            lines.push(Line::styled(format!("  {l}"), style));
        }
    }
    if !d.tool_calls.is_empty() {
        section(
            &mut lines,
            &format!("Tool calls ({})", d.tool_calls.len()),
            theme,
        );
        for c in &d.tool_calls {
            lines.push(Line::raw(format!(
                "  {:<15} {:<5} {} ({} bytes, {} ms)",
                c.tool,
                c.outcome,
                fit(&c.arguments.to_string(), 50),
                c.result_bytes,
                c.duration_ms
            )));
        }
    }
    if !d.notes.is_empty() {
        section(&mut lines, "Notes", theme);
        for n in &d.notes {
            lines.push(Line::from(vec![
                Span::styled(
                    format!(
                        "  {} {}: ",
                        &n.created_at[..n.created_at.len().min(19)],
                        n.agent
                    ),
                    theme.dim(),
                ),
                Span::raw(one_line(&n.text)),
            ]));
        }
    }
    if !d.steps.is_empty() {
        section(&mut lines, "Steps", theme);
        for st in &d.steps {
            let style = if st.outcome == Some(crate::app::types::StepOutcome::Lost) {
                theme.dim()
            } else {
                Style::new()
            };
            lines.push(Line::styled(
                format!("  {}", crate::describe::step_line(st)),
                style,
            ));
        }
    }
    if !d.events.is_empty() {
        section(&mut lines, "History", theme);
        for e in &d.events {
            let change = match (e.from_status, e.to_status) {
                (Some(a), Some(b)) => format!("{} → {}", a.as_str(), b.as_str()),
                (None, Some(b)) => b.as_str().to_string(),
                _ => String::new(),
            };
            lines.push(Line::styled(
                format!(
                    "  {} {:<13} {:<24} {}",
                    &e.created_at[..e.created_at.len().min(19)],
                    e.kind,
                    change,
                    e.agent
                ),
                theme.dim(),
            ));
        }
    }
    if !d.memories.is_empty() {
        section(&mut lines, "Memory", theme);
        for m in &d.memories {
            lines.push(Line::raw(format!(
                "  [{}] {}",
                m.kind,
                fit(&one_line(&m.text), 200)
            )));
        }
    }
    if !d.calls.is_empty() {
        let tokens: u64 = d
            .calls
            .iter()
            .map(|c| c.prompt_tokens.unwrap_or(0) + c.completion_tokens.unwrap_or(0))
            .sum();
        let cost = crate::text::sum_usd(d.calls.iter().map(|c| c.cost_usd));
        section(
            &mut lines,
            &format!(
                "Model calls ({}, {tokens} tokens, ${cost:.4})",
                d.calls.len()
            ),
            theme,
        );
        for c in &d.calls {
            lines.push(Line::raw(format!(
                "  {:<9} {:<10} {:<18} {:<9} {:>5}+{:<5} {:>6} ms ${:.4}",
                c.purpose.as_deref().unwrap_or("-"),
                c.role,
                fit(&c.model, 18),
                c.outcome,
                c.prompt_tokens.unwrap_or(0),
                c.completion_tokens.unwrap_or(0),
                c.latency_ms.unwrap_or(0),
                c.cost_usd
            )));
        }
    }
    let title = format!(" Task {}: {} ", t.id, t.title);
    f.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(fit(&title, area.width.saturating_sub(4) as usize)))
            .wrap(Wrap { trim: false })
            .scroll((app.detail_scroll, 0)),
        area,
    );
}

fn draw_run(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let r = &app.run;
    let [events, tokens] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
    let state = if r.running {
        if r.stopping { "stopping" } else { "running" }
    } else if r.summary.is_some() {
        "finished"
    } else {
        "idle"
    };
    let target = match r.task {
        Some(t) => format!("task {t}"),
        None => "project".into(),
    };
    let height = events.height.saturating_sub(2) as usize;
    let mut lines: Vec<Line<'_>> = r
        .lines
        .iter()
        .skip(r.lines.len().saturating_sub(height))
        .map(|l| Line::raw(l.clone()))
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled(
            format!(
                "No run yet. {} runs the orchestrator on the project, {} on the selected task, {} stops it.",
                app.keys.hint(Action::Run),
                app.keys.hint(Action::RunTask),
                app.keys.hint(Action::Stop)
            ),
            theme.dim(),
        ));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" Run: {target}, {state} "))),
        events,
    );
    // The newest text stays in view: lines are cut to the panel's width
    // here, so the count of rows is exact and nothing scrolls out of sight.
    let text_height = tokens.height.saturating_sub(2) as usize;
    let width = (tokens.width.saturating_sub(2) as usize).max(1);
    let mut rows: Vec<String> = Vec::new();
    for l in r.tokens.split('\n') {
        let chars: Vec<char> = l.chars().collect();
        if chars.is_empty() {
            rows.push(String::new());
        }
        for chunk in chars.chunks(width) {
            rows.push(chunk.iter().collect());
        }
    }
    let shown: Vec<Line<'_>> = rows
        .iter()
        .skip(rows.len().saturating_sub(text_height))
        .map(|l| Line::raw(l.clone()))
        .collect();
    f.render_widget(
        Paragraph::new(shown).block(Block::bordered().title(" Answer as it streams ")),
        tokens,
    );
}

/// What `llmclis serve` answered lately: who asked, which model and route
/// served it, tokens, latency, outcome; newest first, refreshed as the
/// gateway records calls.
fn draw_requests(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let rows: Vec<Row<'_>> = app
        .requests
        .iter()
        .map(|c| {
            let outcome = match c.outcome.as_str() {
                "ok" => Span::styled("ok", theme.fg(Color::Green)),
                "cancelled" => Span::styled("cancelled", theme.dim()),
                other => Span::styled(other.to_string(), theme.fg(Color::Red)),
            };
            let time = c.created_at.get(11..19).unwrap_or(&c.created_at);
            let tokens = match (c.prompt_tokens, c.completion_tokens) {
                (Some(p), Some(o)) => format!("{p}/{o}"),
                _ => "-".into(),
            };
            Row::new(vec![
                Span::raw(time.to_string()),
                Span::raw(fit(c.client.as_deref().unwrap_or("-"), 12)),
                Span::raw(fit(&c.model, 16)),
                Span::raw(fit(&c.role, 8)),
                Span::raw(tokens),
                Span::raw(c.latency_ms.map_or("-".into(), |ms| format!("{ms} ms"))),
                outcome,
            ])
        })
        .collect();
    let title = if app.requests.is_empty() {
        " Requests: none yet (start `llmclis serve`; clients' calls show here) ".to_string()
    } else {
        format!(
            " Requests: the latest {} through llmclis serve ",
            app.requests.len()
        )
    };
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Length(12),
                Constraint::Length(16),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Min(9),
            ],
        )
        .header(
            Row::new([
                "time", "client", "model", "route", "tokens", "latency", "status",
            ])
            .style(theme.title()),
        )
        .block(Block::bordered().title(title)),
        area,
    );
}

fn draw_models(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let m = &app.models;
    let [top, middle, bottom] = match &m.resources {
        Some(r) => {
            let lines = (r.devices.len() + r.servers.len()) as u16 + 2;
            Layout::vertical([
                Constraint::Percentage(35),
                Constraint::Max(lines),
                Constraint::Min(4),
            ])
            .areas(area)
        }
        None => Layout::vertical([
            Constraint::Percentage(45),
            Constraint::Length(0),
            Constraint::Percentage(55),
        ])
        .areas(area),
    };
    if let Some(r) = &m.resources {
        draw_memory_panel(f, middle, r, theme);
    }
    let rows: Vec<Row<'_>> = m
        .providers
        .iter()
        .map(|p| {
            let health = match &p.health {
                None if m.checking => Span::styled("checking…", theme.dim()),
                None => Span::styled("not checked", theme.dim()),
                Some(h) if h.ok => Span::styled(
                    format!("up: {}", fit(&h.served.join(", "), 40)),
                    theme.fg(Color::Green),
                ),
                Some(h) => Span::styled(
                    format!("down: {}", fit(h.error.as_deref().unwrap_or(""), 40)),
                    theme.fg(Color::Red),
                ),
            };
            let key = match (&p.key_env, p.key_set) {
                (None, _) => String::new(),
                (Some(k), true) => format!("{k} set"),
                (Some(k), false) => format!("{k} unset"),
            };
            Row::new(vec![
                Span::raw(p.name.clone()),
                Span::raw(if p.local { "local" } else { "api" }),
                Span::raw(fit(&p.base_url, 28)),
                Span::raw(key),
                health,
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(11),
                Constraint::Length(5),
                Constraint::Length(28),
                Constraint::Length(22),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(["provider", "kind", "url", "key", "health (what it serves)"])
                .style(theme.title()),
        )
        .block(Block::bordered().title(format!(" Providers ({} mode; {}) ", m.mode, m.source))),
        top,
    );
    let fit_of = |id: &str| {
        m.resources
            .as_ref()
            .and_then(|r| r.models.iter().find(|p| p.id == id))
            .map(|p| crate::describe::fit_short(&p.placement.fit))
            .unwrap_or_default()
    };
    let rows: Vec<Row<'_>> = m
        .models
        .iter()
        .map(|x| {
            Row::new(vec![
                x.id.clone(),
                x.provider.clone(),
                fit(&x.served_name, 20),
                x.context_window.to_string(),
                fit_of(&x.id),
                x.roles.join(" "),
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(18),
                Constraint::Length(9),
                Constraint::Length(20),
                Constraint::Length(6),
                Constraint::Length(14),
                Constraint::Min(8),
            ],
        )
        .header(
            Row::new(["model", "provider", "served as", "window", "now", "roles"])
                .style(theme.title()),
        )
        .block(Block::bordered().title(" Models ")),
        bottom,
    );
}

/// Memory per device and what each local server holds.
fn draw_memory_panel(
    f: &mut Frame<'_>,
    area: Rect,
    r: &crate::app::models::Resources,
    theme: &Theme,
) {
    use crate::app::types::gib;
    let mut lines: Vec<Line<'_>> = Vec::new();
    for d in &r.devices {
        let text = match (d.used, d.total) {
            (Some(u), Some(t)) => format!(
                "{:<6} {} {} / {}{}",
                d.device.to_string(),
                crate::text::bar(u, t, 12),
                gib(u),
                gib(t),
                d.name
                    .as_deref()
                    .map(|n| format!("  {n}"))
                    .unwrap_or_default()
            ),
            _ => format!(
                "{:<6} {}",
                d.device.to_string(),
                r.gpu_note.as_deref().unwrap_or("not known")
            ),
        };
        lines.push(Line::raw(text));
    }
    for s in &r.servers {
        let (text, style) = if !s.up {
            ("down".to_string(), theme.fg(Color::Red))
        } else if s.sleeping == Some(true) {
            ("asleep".to_string(), theme.dim())
        } else if s.loaded.is_empty() {
            ("nothing loaded".to_string(), theme.dim())
        } else {
            let names: Vec<String> = s.loaded.iter().map(|l| l.describe()).collect();
            (names.join(", "), theme.fg(Color::Green))
        };
        let queue = match (s.running, s.waiting) {
            (None, None) => String::new(),
            (r, w) => format!("  {} running, {} waiting", r.unwrap_or(0), w.unwrap_or(0)),
        };
        lines.push(Line::from(vec![
            Span::raw(format!("{:<10} ", s.provider)),
            Span::styled(text, style),
            Span::styled(queue, theme.dim()),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Memory and loaded models ")),
        area,
    );
}

fn draw_memory(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let [tree, search] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    draw_memory_tree(f, tree, app, theme);
    let [input, results] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(search);
    let mut ta = app.memory_query.clone();
    ta.set_block(Block::bordered().title(" Search memory by meaning "));
    f.render_widget(&ta, input);
    let mut lines: Vec<Line<'_>> = Vec::new();
    for h in &app.memory_hits {
        lines.push(Line::from(vec![
            Span::styled(format!("{:.3} ", h.score), theme.fg(Color::Green)),
            Span::styled(
                format!(
                    "[{}] #{}{} ",
                    h.record.kind,
                    h.record.id,
                    h.record
                        .task_id
                        .map(|t| format!(" task {t}"))
                        .unwrap_or_default()
                ),
                theme.dim(),
            ),
            Span::raw(fit(&one_line(&h.record.text), 300)),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::styled(
            "Type what you are looking for and press enter; esc goes back.",
            theme.dim(),
        ));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(format!(" Results {} ", app.memory_status))),
        results,
    );
}

/// The project's memory tree as `memory tree` prints it, each summary's
/// first line dimmed under its task.
fn draw_memory_tree(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let lines: Vec<Line<'_>> = match &app.memory_tree {
        Some(t) => t
            .render()
            .lines()
            .map(|l| {
                if l.trim_start().starts_with('↳') {
                    Line::styled(l.to_string(), theme.dim())
                } else {
                    Line::raw(l.to_string())
                }
            })
            .collect(),
        None => vec![Line::styled(
            "Pick a project to see its memory.",
            theme.dim(),
        )],
    };
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Memory tree ")),
        area,
    );
}

fn draw_projects(f: &mut Frame<'_>, area: Rect, app: &App, theme: &Theme) {
    let items: Vec<ListItem<'_>> = app
        .projects
        .iter()
        .map(|r| {
            let c = &r.counts;
            ListItem::new(Line::from(vec![
                Span::raw(format!(
                    "{:>4}  {:<28}",
                    r.project.id,
                    fit(&r.project.name, 28)
                )),
                Span::styled(
                    format!(
                        " {} pending · {} in progress · {} blocked · {} done",
                        c.pending, c.in_progress, c.blocked, c.done
                    ),
                    theme.dim(),
                ),
            ]))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(app.project_cursor));
    f.render_stateful_widget(
        List::new(items)
            .block(Block::bordered().title(" Projects (enter opens) "))
            .highlight_style(theme.selected()),
        area,
        &mut state,
    );
}

fn draw_help(f: &mut Frame<'_>, app: &App, theme: &Theme) {
    let rows: Vec<Row<'_>> = BINDINGS
        .iter()
        .map(|(action, _, _, what)| {
            let keys: Vec<String> = app
                .keys
                .keys_for(*action)
                .iter()
                .map(|k| k.to_string())
                .collect();
            Row::new(vec![keys.join(" "), what.to_string()])
        })
        .collect();
    // Two columns when one does not fit (80×24).
    let one_column = f.area().height >= rows.len() as u16 + 4;
    let (width, height) = if one_column {
        (64, rows.len() as u16 + 4)
    } else {
        (f.area().width, (rows.len() as u16).div_ceil(2) + 4)
    };
    let area = centered(f.area(), width, height);
    f.render_widget(Clear, area);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" Keys ")
        .title_bottom(" [tui.keys] in config.toml changes them · any key closes ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let widths = [Constraint::Length(12), Constraint::Min(10)];
    if one_column {
        f.render_widget(
            Table::new(rows, widths).style(theme.fg(Color::White)),
            inner,
        );
    } else {
        let half = rows.len().div_ceil(2);
        let mut right = rows;
        let left: Vec<Row<'_>> = right.drain(..half).collect();
        let [l, r] = Layout::horizontal([Constraint::Ratio(1, 2); 2]).areas(inner);
        f.render_widget(Table::new(left, widths), l);
        f.render_widget(Table::new(right, widths), r);
    }
}

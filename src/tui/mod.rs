//! The task board: `llmclis` with no arguments (or `llmclis tui`).
//!
//! Three threads: the UI (draws, turns keys into actions), a key reader, and
//! the worker (database, runs, health checks), talking over one channel of
//! `Msg`s, so the UI never blocks on SQLite or the network. The terminal is
//! restored on exit and on panic (ratatui's hook); logs go to the data dir.

pub mod app;
pub mod keys;
pub mod ui;
pub(crate) mod worker;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyEventKind};

use crate::app::Context as Ctx;
use crate::error::{Error, Result};
use app::{App, Job, Msg, View};

/// Whether to use colour: NO_COLOR (any non-empty value) turns it off.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub(crate) fn run(ctx: &Ctx) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Error::InvalidInput(
            "the task board needs a terminal; for scripts use the commands (`llmclis --help`)"
                .into(),
        ));
    }
    let keys = keys::KeyMap::new(&ctx.config.tui.keys).map_err(|e| Error::Config {
        path: ctx.paths.config_file(),
        message: e.to_string(),
    })?;
    crate::logging::init(&ctx.paths);
    // Found before the screen switches: a bad database is a plain error.
    let db = ctx.store()?;
    let start = crate::app::board::start_project(ctx, &db);
    drop(db);

    let (tx, rx) = mpsc::channel::<Msg>();
    let jobs = worker::spawn(ctx.clone(), tx.clone())?;
    let mut app = App::new(keys, color_enabled());
    let _ = jobs.send(Job::LoadProjects);
    match start {
        Some(p) => {
            let _ = jobs.send(Job::LoadBoard(p));
        }
        None => {
            app.view = View::Projects;
            app.status_line =
                "no project yet: `llmclis project add NAME` or `llmclis plans import plans.md`"
                    .into();
        }
    }
    std::thread::Builder::new()
        .name("llmclis-tui-keys".into())
        .spawn(move || {
            loop {
                let msg = match event::poll(Duration::from_millis(200)) {
                    Ok(true) => match event::read() {
                        Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => Msg::Key(k),
                        Ok(Event::Resize(..)) => Msg::Resize,
                        Ok(_) => continue,
                        Err(e) => Msg::InputClosed(e.to_string()),
                    },
                    Ok(false) => continue,
                    Err(e) => Msg::InputClosed(e.to_string()),
                };
                // Without keys the board could never quit: it closes.
                let closed = matches!(msg, Msg::InputClosed(_));
                if tx.send(msg).is_err() || closed {
                    break;
                }
            }
        })
        .map_err(|e| Error::io("<key thread>", e))?;

    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            // Raw mode may be on already.
            ratatui::restore();
            return Err(Error::io("<terminal>", e));
        }
    };
    let result = event_loop(&mut terminal, &mut app, &rx, &jobs);
    ratatui::restore();
    if app.run.running {
        // Quitting during a run: stop it so its task goes back to the queue.
        let _ = jobs.send(Job::StopRun);
        eprintln!("stopping the run: its task goes back to the queue…");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Msg::RunEnded(_)) => break,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
    }
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rx: &mpsc::Receiver<Msg>,
    jobs: &mpsc::Sender<Job>,
) -> Result<()> {
    loop {
        terminal
            .draw(|f| ui::draw(f, app))
            .map_err(|e| Error::io("<terminal>", e))?;
        // Block for the next message, then take whatever else is waiting, so
        // a burst of streamed tokens costs one frame.
        let first = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        for msg in first.into_iter().chain(rx.try_iter()) {
            for job in app.on_msg(msg) {
                if jobs.send(job).is_err() {
                    return Err(Error::Internal("the board's worker stopped".into()));
                }
            }
            if app.quit {
                return Ok(());
            }
        }
    }
}

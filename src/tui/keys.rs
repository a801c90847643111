//! Key bindings: every action has default keys; `[tui.keys]` in config.toml
//! replaces the keys of the actions it names (a partial patch), e.g.
//! `quit = ["q", "ctrl-q"]`.

use std::collections::BTreeMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::error::{Error, Result};

/// What a key asks for, in the views that are not editing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Quit,
    Up,
    Down,
    Left,
    Right,
    Top,
    Bottom,
    Open,
    Back,
    Filter,
    Add,
    Edit,
    Note,
    Status,
    Delete,
    ApplyChange,
    RejectChange,
    Run,
    RunTask,
    Stop,
    Help,
    Projects,
    Board,
    RunPanel,
    Models,
    Memory,
    Requests,
    Refresh,
}

/// (action, config name, default keys, what it does): the help overlay
/// lists this table.
pub const BINDINGS: &[(Action, &str, &[&str], &str)] = &[
    (Action::Up, "up", &["up", "k"], "move up"),
    (Action::Down, "down", &["down", "j"], "move down"),
    (Action::Left, "left", &["left", "h"], "previous column"),
    (Action::Right, "right", &["right", "l"], "next column"),
    (Action::Top, "top", &["g", "home"], "first task"),
    (Action::Bottom, "bottom", &["G", "end"], "last task"),
    (Action::Open, "open", &["enter"], "open a task or project"),
    (Action::Back, "back", &["esc"], "back to the board"),
    (Action::Filter, "filter", &["/"], "filter the board by text"),
    (Action::Add, "add", &["a"], "add a task"),
    (Action::Edit, "edit", &["e"], "edit the task"),
    (Action::Note, "note", &["n"], "add a note"),
    (Action::Status, "status", &["s"], "change the status"),
    (
        Action::Delete,
        "delete",
        &["D", "delete"],
        "delete (asks first)",
    ),
    (
        Action::ApplyChange,
        "apply_change",
        &["A"],
        "apply its proposed change",
    ),
    (
        Action::RejectChange,
        "reject_change",
        &["B"],
        "send its change back",
    ),
    (Action::Run, "run", &["r"], "run the project"),
    (Action::RunTask, "run_task", &["R"], "run this task"),
    (Action::Stop, "stop", &["x"], "stop the run"),
    (Action::Board, "board", &["1"], "board"),
    (Action::RunPanel, "run_panel", &["2"], "run panel"),
    (Action::Models, "models", &["3"], "models"),
    (Action::Memory, "memory", &["4"], "memory tree and search"),
    (Action::Requests, "requests", &["5"], "gateway requests"),
    (Action::Projects, "projects", &["p"], "switch project"),
    (Action::Refresh, "refresh", &["ctrl-r"], "reload"),
    (Action::Help, "help", &["?"], "this help"),
    (Action::Quit, "quit", &["q", "ctrl-c"], "quit"),
];

/// A key as written in config: `q`, `G`, `ctrl-r`, `enter`, `f5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn parse(text: &str) -> Option<Key> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = text;
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-") {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-") {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "backspace" => KeyCode::Backspace,
            "delete" => KeyCode::Delete,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "space" => KeyCode::Char(' '),
            f if f.len() > 1 && f.starts_with('f') => KeyCode::F(f[1..].parse().ok()?),
            c if c.chars().count() == 1 => KeyCode::Char(c.chars().next()?),
            _ => return None,
        };
        Some(Key { code, ctrl, alt })
    }

    pub fn of(ev: &KeyEvent) -> Key {
        // Shifted letters arrive as their capital; the SHIFT flag adds nothing.
        Key {
            code: ev.code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::Delete => f.write_str("delete"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KeyMap {
    keys: Vec<(Key, Action)>,
}

impl KeyMap {
    /// The defaults, with `overrides` (action name → keys) applied.
    pub fn new(overrides: &BTreeMap<String, Vec<String>>) -> Result<KeyMap> {
        let parse = |name: &str, k: &str| {
            Key::parse(k).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "[tui.keys] {name}: unknown key {k:?}; use a character, ctrl-X, alt-X, enter, esc, tab, up, down, left, right, home, end, pageup, pagedown, delete, space or f1…f12"
                ))
            })
        };
        // The user's keys first, and taken away from any default they clash with.
        let mut keys: Vec<(Key, Action)> = Vec::new();
        for (action, name, _, _) in BINDINGS {
            for k in overrides.get(*name).into_iter().flatten() {
                let key = parse(name, k)?;
                if let Some((_, other)) = keys.iter().find(|(x, a)| *x == key && a != action) {
                    let other = BINDINGS.iter().find(|b| b.0 == *other).map_or("", |b| b.1);
                    return Err(Error::InvalidInput(format!(
                        "[tui.keys]: {k:?} is given to both {other} and {name}; give each key one action"
                    )));
                }
                keys.push((key, *action));
            }
        }
        let taken: Vec<Key> = keys.iter().map(|(k, _)| *k).collect();
        for (action, name, defaults, _) in BINDINGS {
            if overrides.contains_key(*name) {
                continue;
            }
            for k in defaults.iter() {
                let key = Key::parse(k).ok_or_else(|| {
                    Error::InvalidInput(format!("[tui.keys] {name}: unknown key {k:?}"))
                })?;
                if !taken.contains(&key) {
                    keys.push((key, *action));
                }
            }
        }
        for name in overrides.keys() {
            if !BINDINGS.iter().any(|(_, n, _, _)| n == name) {
                let names: Vec<&str> = BINDINGS.iter().map(|(_, n, _, _)| *n).collect();
                return Err(Error::InvalidInput(format!(
                    "[tui.keys]: unknown action {name:?}; the actions are {}",
                    names.join(", ")
                )));
            }
        }
        Ok(KeyMap { keys })
    }

    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        let k = Key::of(ev);
        self.keys.iter().find(|(key, _)| *key == k).map(|(_, a)| *a)
    }

    /// The keys bound to an action, for help and hints.
    pub fn keys_for(&self, action: Action) -> Vec<Key> {
        self.keys
            .iter()
            .filter(|(_, a)| *a == action)
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn hint(&self, action: Action) -> String {
        self.keys_for(action)
            .first()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "-".into())
    }
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap::new(&BTreeMap::new()).expect("the defaults parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn defaults_vim_keys_and_a_partial_patch() {
        let m = KeyMap::default();
        assert_eq!(
            m.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Action::Down)
        );
        assert_eq!(
            m.action(&ev(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(Action::Bottom)
        );
        assert_eq!(
            m.action(&ev(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        let mut o = BTreeMap::new();
        o.insert("quit".to_string(), vec!["ctrl-q".to_string()]);
        let m = KeyMap::new(&o).unwrap();
        assert_eq!(m.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)), None);
        assert_eq!(
            m.action(&ev(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            m.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Action::Down),
            "the rest stay"
        );
        o.insert("jump".to_string(), vec!["z".to_string()]);
        assert!(
            KeyMap::new(&o)
                .unwrap_err()
                .to_string()
                .contains("unknown action \"jump\"")
        );
        // A key moved to another action leaves its old one.
        let mut o = BTreeMap::new();
        o.insert("stop".to_string(), vec!["r".to_string()]);
        let m = KeyMap::new(&o).unwrap();
        assert_eq!(
            m.action(&ev(KeyCode::Char('r'), KeyModifiers::NONE)),
            Some(Action::Stop)
        );
        o.insert("quit".to_string(), vec!["r".to_string()]);
        assert!(
            KeyMap::new(&o)
                .unwrap_err()
                .to_string()
                .contains("given to both")
        );
        let mut o = BTreeMap::new();
        o.insert("quit".to_string(), vec!["hyper-q".to_string()]);
        assert!(
            KeyMap::new(&o)
                .unwrap_err()
                .to_string()
                .contains("unknown key")
        );
    }
}

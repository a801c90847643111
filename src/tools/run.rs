//! Running tools: git status and diff, allow-listed commands, each in the
//! sandbox with a timeout that kills its process group, an output cap and
//! an environment without API keys.

use super::*;

impl Toolbox {
    pub(super) fn git_diff(&self) -> ToolOutcome {
        let d = self.diff();
        if d.is_empty() {
            ToolOutcome::ok("no changes yet")
        } else {
            ToolOutcome::ok(self.cap(&d))
        }
    }

    pub(super) fn git(&self, args: &[&str]) -> ToolOutcome {
        // No repository setting may start a program from here.
        let argv: Vec<String> = [
            "git",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
        self.run(&argv)
    }

    pub(super) fn run_command(&self, name: &str) -> ToolOutcome {
        match self.commands.get(name) {
            Some(argv) if !argv.is_empty() => match self.exec_dir() {
                Ok(dir) => self.run_in(&dir, argv),
                Err(e) => ToolOutcome::err(e),
            },
            _ => {
                let names: Vec<&str> = self.commands.keys().map(String::as_str).collect();
                ToolOutcome::err(format!(
                    "command {name:?} is not allowed here; the allowed ones are: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            }
        }
    }

    /// The output's end: test failures and summaries are last.
    pub(super) fn cap(&self, text: &str) -> String {
        check::tail(text, self.output_cap)
    }

    /// Where commands see the change: the root when writes are on, else
    /// the scratch copy, brought up to date with the overlay.
    pub fn exec_dir(&self) -> Result<PathBuf, String> {
        let root = self.sandbox.root();
        if self.allow_writes {
            return Ok(root.to_path_buf());
        }
        let mut scratch = self.scratch.lock().expect("scratch lock");
        if scratch.is_none() {
            *scratch = Some(scratch::Scratch::copy_of(root)?);
        }
        let s = scratch.as_mut().expect("made above");
        s.sync(root, &self.overlay)?;
        Ok(s.path().to_path_buf())
    }

    /// Runs argv in the root (git, which needs the repository).
    pub(super) fn run(&self, argv: &[String]) -> ToolOutcome {
        self.run_in(self.sandbox.root(), argv)
    }

    /// Runs argv in `dir`, as text for the model.
    pub(super) fn run_in(&self, dir: &Path, argv: &[String]) -> ToolOutcome {
        let r = self.spawn(dir, argv);
        match r.exit {
            Some(0) => ToolOutcome::ok(format!("exit 0 in {:.1} s\n{}", r.seconds, r.output)),
            Some(code) if !r.killed && r.started => {
                ToolOutcome::err(format!("exit {code} in {:.1} s\n{}", r.seconds, r.output))
            }
            _ if !r.started => ToolOutcome::err(r.output),
            _ if r.killed => ToolOutcome::err(format!(
                "killed after the {} s timeout\n{}",
                self.timeout.as_secs_f64(),
                r.output
            )),
            _ => ToolOutcome::err(format!("exit signal in {:.1} s\n{}", r.seconds, r.output)),
        }
    }

    /// Runs argv in `dir` with the timeout (the whole process group is
    /// killed) and the output cap, with an environment that holds no API
    /// keys.
    pub(super) fn spawn(&self, dir: &Path, argv: &[String]) -> Spawned {
        let mut cmd = Command::new(&argv[0]);
        cmd.env_clear();
        for (k, v) in std::env::vars_os() {
            if k.to_str()
                .is_some_and(|k| PASSED_ENV.contains(&k) || k.starts_with("LC_"))
            {
                cmd.env(k, v);
            }
        }
        cmd.args(&argv[1..])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Spawned {
                    exit: None,
                    killed: false,
                    started: false,
                    seconds: 0.0,
                    output: format!("cannot run {}: {e}", argv[0]),
                };
            }
        };
        // Both streams into one buffer, kept to twice the cap while running.
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let limit = self.output_cap * 2;
        let readers = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut r| {
            let buf = buf.clone();
            let done = done_tx.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut b = buf.lock().expect("output buffer");
                    b.extend_from_slice(&chunk[..n]);
                    if b.len() > limit {
                        let drop = b.len() - limit;
                        b.drain(..drop);
                    }
                }
                let _ = done.send(());
            })
        })
        .count();
        // The child is waited for on a thread of its own, so its end is
        // seen at once (no polling); at the timeout its group is killed.
        let pid = child.id();
        let (status_tx, status_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = status_tx.send(child.wait().ok());
        });
        let status = match status_rx.recv_timeout(self.timeout) {
            Ok(s) => s,
            Err(_) => {
                kill_group(pid);
                let _ = status_rx.recv();
                None
            }
        };
        // What the command left running in its group goes too; a reader
        // still blocked after that (a process that left the group holds the
        // pipe) is abandoned rather than waited for.
        kill_group(pid);
        for _ in 0..readers {
            if done_rx.recv_timeout(Duration::from_secs(2)).is_err() {
                break;
            }
        }
        let text = String::from_utf8_lossy(&buf.lock().expect("output buffer")).into_owned();
        let text = self.cap(&text);
        Spawned {
            exit: status.and_then(|s| s.code()),
            killed: status.is_none(),
            started: true,
            seconds: started.elapsed().as_secs_f64(),
            output: text,
        }
    }
}

/// A command's end: its exit code (None: a signal, or killed at the
/// timeout), its time and its capped output.
pub(super) struct Spawned {
    pub(super) exit: Option<i32>,
    pub(super) killed: bool,
    /// False when it could not be started (`output` says why).
    pub(super) started: bool,
    pub(super) seconds: f64,
    pub(super) output: String,
}

/// Variables a command keeps; API keys and everything else are dropped.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TERM",
    "TMPDIR",
    "SHELL",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "CARGO_TARGET_DIR",
    "RUSTFLAGS",
    "GOPATH",
    "GOCACHE",
    "JAVA_HOME",
    "NODE_PATH",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "CI",
];

fn kill_group(pid: u32) {
    #[cfg(unix)]
    {
        // The whole group (the child leads it): a test runner's own
        // children go too.
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

//! Facts about processes that records of runs need: this host's name, and
//! whether a process of this host is still alive.

/// This machine's host name (`unknown` when it cannot be read).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether process `pid` of this host is alive. A zombie (dead, not yet
/// reaped by its parent) counts as dead. Where /proc cannot tell, a process
/// is taken as alive, so only its heartbeat can declare it dead.
pub fn alive(pid: i64) -> bool {
    if pid <= 0 || pid > i32::MAX as i64 {
        return false;
    }
    if !std::path::Path::new("/proc/self/stat").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and
        // may itself hold spaces and parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(alive(std::process::id() as i64));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i64;
        child.wait().unwrap();
        assert!(!alive(pid));
        assert!(!alive(-1));
    }

    #[test]
    fn a_killed_but_unreaped_child_is_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i64;
        assert!(alive(pid));
        child.kill().unwrap();
        // Not reaped yet: a zombie.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!alive(pid));
        child.wait().unwrap();
    }
}

//! System RAM and swap from `/proc/meminfo`.

pub use super::snapshot::Ram;

/// This machine's RAM, or None off Linux.
pub fn read() -> Option<Ram> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemTotal:  24576000 kB` lines; the four figures needed, in bytes.
pub fn parse_meminfo(text: &str) -> Option<Ram> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        })
    };
    Some(Ram {
        total: field("MemTotal")?,
        available: field("MemAvailable").or_else(|| field("MemFree"))?,
        swap_total: field("SwapTotal").unwrap_or(0),
        swap_free: field("SwapFree").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_ram_and_swap_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n";
        let r = parse_meminfo(text).unwrap();
        assert_eq!(r.total, 24_576_000 * 1024);
        assert_eq!(r.available, 20_000_000 * 1024);
        assert_eq!(r.swap_total, 0);
        assert!(parse_meminfo("garbage").is_none());
        assert!(read().is_some_and(|r| r.total > 0), "this machine's own");
    }
}

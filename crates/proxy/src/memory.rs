//! Giving back the pages a proxy's start-up touched and its steady state never does.
//!
//! A proxy parses its arguments and config, finds or starts a daemon, then only relays: a small,
//! scattered part of the `shoal` binary. The kernel maps file pages into a process 64 KiB at a
//! time around each page it touches ("fault-around"), so by the time the proxy is connected most
//! of the binary's code is mapped into it and counted in its `VmRSS`, which hosts, `top` and
//! `ps` show for every session. Once connected, the proxy drops its mappings of read-only file
//! pages (`MADV_DONTNEED`: the binary's code and constants, libc's); what the relay loop runs is
//! faulted back in from the page cache on first use. Nothing is freed from the page cache and
//! nothing changes in what the process computes; the cost is a few hundred minor faults, once.
//! Mappings with pages of their own (the RELRO data the loader relocated, then write-protected)
//! are left alone: dropping those would bring back the file's unrelocated bytes.

/// Drop this process's mappings of read-only file pages (see the module docs). Linux only; a
/// no-op where `/proc/self/smaps` cannot be read.
pub(crate) fn drop_startup_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut candidate: Option<(usize, usize)> = None;
    let mut clean = true;
    let flush = |candidate: Option<(usize, usize)>, clean: bool| {
        if let (Some((start, end)), true) = (candidate, clean) {
            // SAFETY: a page-aligned mapping of this process, listed in its own smaps, private,
            // not writable and without a page of its own (no anonymous page: not the relocated,
            // then write-protected, RELRO data): dropping it only makes the next
            // access read the same bytes from the file, whose inode the mapping keeps alive
            // even if the file is replaced on disk.
            unsafe {
                nix::libc::madvise(
                    start as *mut nix::libc::c_void,
                    end.saturating_sub(start),
                    nix::libc::MADV_DONTNEED,
                );
            }
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            // A new mapping: `start-end perms offset dev inode path`. Act on the previous one.
            flush(candidate.take(), clean);
            clean = true;
            let perms = fields.next().unwrap_or("");
            let file = fields.nth(3).is_some_and(|path| path.starts_with('/'));
            let read_only = perms.starts_with("r-") && perms.ends_with('p');
            if file && read_only {
                candidate = Some((start, end));
            }
            continue;
        }
        // A field of the current mapping: a page of its own (copied on write: `Anonymous`)
        // disqualifies it. Dirty page-cache pages (a binary just written by the linker) are
        // still the file's.
        if first == "Anonymous:" && fields.next().is_some_and(|kib| kib != "0") {
            clean = false;
        }
    }
    flush(candidate, clean);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_file_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("RssFile:"))
            .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn the_pages_go_and_the_code_still_runs() {
        let before = rss_file_kib();
        drop_startup_pages();
        let after = rss_file_kib();
        assert!(after < before, "RssFile {before} kB -> {after} kB");
        // Code and constants come back from the file as they were; relocated data was kept.
        let mut map = std::collections::HashMap::new();
        for n in 0..1000 {
            map.insert(format!("key {n}"), n * 2);
        }
        assert_eq!(map["key 999"], 1998);
        assert_eq!(format!("{:?}", Some("text")), "Some(\"text\")");
    }
}

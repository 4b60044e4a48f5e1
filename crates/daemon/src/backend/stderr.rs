//! The server's stderr, copied to `daemon.log` a line at a time with a timestamp, so that what
//! the server said can be lined up with what the daemon did (whose own lines are timestamped
//! by its logger).
//!
//! Lines are written whole with one `write` each (the log is opened for appending, so they never
//! interleave with the daemon's own lines mid-line). A line longer than [`MAX_LINE`] is written in
//! pieces of that size, each a line of its own; bytes that are not UTF-8 are shown as U+FFFD.
//! A server that writes to stderr faster than the log takes it is slowed down by the pipe, as it
//! would be by a slow terminal.

use std::fs::File;
use std::io::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader};

/// The longest piece of a stderr line written as one log line.
const MAX_LINE: u64 = 16 * 1024;

/// Copy `stderr` to `log` until it closes (the server and every process that shares its stderr
/// exited) or the log cannot be written.
pub(crate) async fn copy_to_log(stderr: impl AsyncRead + Unpin, log: Arc<File>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
        let entry = format!("{} server: {text}\n", timestamp(SystemTime::now()));
        if (&*log).write_all(entry.as_bytes()).is_err() {
            return;
        }
    }
}

/// `2026-12-04T01:55:06.627617Z`: UTC, microseconds, as the daemon's logger writes its own.
pub(crate) fn timestamp(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_micros()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_match_the_calendar() {
        let at = |seconds: u64, micros: u64| {
            timestamp(
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(seconds)
                    + Duration::from_micros(micros),
            )
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(at(1_796_348_106, 627_617), "2026-12-04T01:35:06.627617Z");
        assert_eq!(at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }

    #[tokio::test]
    async fn every_line_is_stamped_and_long_ones_are_cut_into_lines() {
        let path = std::env::temp_dir().join(format!("shoal-stderr-{}", std::process::id()));
        let log = File::create(&path).unwrap();
        let mut input = b"first\n\xffsecond\nno newline at the end".to_vec();
        input.splice(0..0, vec![b'x'; 20_000].into_iter().chain(*b"\n"));
        copy_to_log(&input[..], Arc::new(log)).await;
        let mut written = String::new();
        File::open(&path)
            .unwrap()
            .read_to_string(&mut written)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 5, "{written}");
        for line in &lines {
            let (stamp, rest) = line.split_once(' ').unwrap();
            assert_eq!(stamp.len(), "2026-12-04T01:55:06.627617Z".len(), "{line}");
            assert!(rest.starts_with("server: "), "{line}");
        }
        assert_eq!(
            lines[0].len() - "2026-12-04T01:55:06.627617Z server: ".len(),
            16 * 1024
        );
        assert!(lines[1].ends_with(&"x".repeat(20_000 - 16 * 1024)));
        assert!(lines[2].ends_with(" server: first"));
        assert!(lines[3].ends_with(" server: \u{fffd}second"));
        assert!(lines[4].ends_with(" server: no newline at the end"));
    }
}

//! Reading the idle timeout from `--idle-timeout` / `SHOAL_IDLE_TIMEOUT`.

use std::time::Duration;

/// A value for the idle timeout that is not a number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "use {value:?} as an idle timeout: expected a number of seconds such as 300 or 0.5 \
     (0 means never exit on idle)"
)]
pub struct IdleTimeoutError {
    /// The rejected text.
    pub value: String,
}

/// Parse an idle timeout in seconds: `"300"`, `"0.5"`; `"0"` means never (`None`).
///
/// The longest accepted value is a year: anything longer is almost certainly a unit mistake
/// (milliseconds given as seconds), and a daemon that outlives that is a leak in all but name.
///
/// ```
/// use std::time::Duration;
/// use shoal_daemon::parse_idle_timeout;
///
/// assert_eq!(parse_idle_timeout("300"), Ok(Some(Duration::from_secs(300))));
/// assert_eq!(parse_idle_timeout("0.25"), Ok(Some(Duration::from_millis(250))));
/// assert_eq!(parse_idle_timeout("0"), Ok(None));
/// assert!(parse_idle_timeout("5m").is_err());
/// ```
pub fn parse_idle_timeout(text: &str) -> Result<Option<Duration>, IdleTimeoutError> {
    const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
    let error = || IdleTimeoutError {
        value: text.to_owned(),
    };
    let trimmed = text.trim();
    // Digits and at most one dot: no signs, exponents, "inf" or "NaN" that f64 parsing accepts.
    if trimmed.is_empty()
        || !trimmed
            .bytes()
            .all(|byte| byte.is_ascii_digit() || byte == b'.')
        || trimmed.bytes().filter(|&byte| byte == b'.').count() > 1
    {
        return Err(error());
    }
    let seconds: f64 = trimmed.parse().map_err(|_| error())?;
    if seconds > MAX_SECONDS {
        return Err(error());
    }
    if seconds == 0.0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<Option<u128>>) {
        let parsed = parse_idle_timeout(text)
            .ok()
            .map(|timeout| timeout.map(|duration| duration.as_millis()));
        assert_eq!(parsed, expected, "{text:?}");
    }

    #[test]
    fn accepts_seconds_and_zero() {
        check("300", Some(Some(300_000)));
        check(" 1.5 ", Some(Some(1_500)));
        check("0", Some(None));
        check("0.0", Some(None));
        check(".5", Some(Some(500)));
    }

    #[test]
    fn rejects_everything_else() {
        for text in ["", "-1", "5m", "1e3", "inf", "NaN", "1.2.3", "99999999999"] {
            check(text, None);
        }
        assert_eq!(
            parse_idle_timeout("5m").unwrap_err().to_string(),
            "use \"5m\" as an idle timeout: expected a number of seconds such as 300 or 0.5 (0 \
             means never exit on idle)"
        );
    }
}

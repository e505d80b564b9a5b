//! Time, for record expiry: one injectable clock per store, and RFC 3339
//! timestamps (what the command line and import lines spell).

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a store reads the time: expiry compares records' `expires_at`
/// with it. [`SystemClock`] by default; tests inject a [`ManualClock`].
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        to_ms(SystemTime::now())
    }
}

/// A clock that moves only when told: expiry tests need not sleep.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: SystemTime) -> Self {
        ManualClock(AtomicI64::new(to_ms(at)))
    }

    /// Show `at` from now on.
    pub fn set(&self, at: SystemTime) {
        self.0.store(to_ms(at), Ordering::SeqCst);
    }

    /// Move forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(
            by.as_millis().min(i64::MAX as u128) as i64,
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Milliseconds since the Unix epoch (negative before it, saturating).
pub fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_millis().min(i64::MAX as u128) as i64),
    }
}

/// `2026-12-31T23:59:59Z`, `2026-12-31T23:59:59.5+01:00`: RFC 3339 (a
/// `T` or a space between date and time; `Z` or an offset required) to
/// Unix milliseconds. `None` if it is not one, or out of years 1..=9999.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        millis = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 60 + m;
            if *c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in[month as usize - 1] {
        return None;
    }
    // 60 is a leap second: taken as the next second's start.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60;
    Some(secs * 1000 + millis)
}

/// Unix milliseconds as RFC 3339 in UTC (`2026-12-31T23:59:59.500Z`; the
/// fraction only when there is one).
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rest / 3600, rest / 60 % 60, rest % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    }
}

/// `30d`, `12h`, `15m`, `90s`, `500ms`, `2w`: a duration (one number, one
/// unit). `None` if it is not one, is zero, or is absurdly long.
pub fn parse_ttl(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    let ms = n.checked_mul(ms_per)?;
    // A century is the most a record may be kept for by a TTL.
    (ms > 0 && ms <= 100 * 366 * 86_400_000).then(|| Duration::from_millis(ms))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_rejects_what_is_not_one() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1969-12-31T23:00:00-01:00"), Some(0));
        assert_eq!(
            parse_rfc3339("2000-02-29 12:00:00.123456Z"),
            Some(951_825_600_123)
        );
        let t = parse_rfc3339("2026-12-02T17:48:24.250Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-12-02T17:48:24.250Z");
        assert_eq!(
            format_rfc3339(parse_rfc3339("2026-01-01T00:00:00Z").unwrap()),
            "2026-01-01T00:00:00Z"
        );
        for day in (-700_000..2_900_000).step_by(997) {
            let ms = day * 86_400_000 + 12_345_678;
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms), "{ms}");
        }
        for bad in [
            "",
            "2026-12-02",
            "2026-12-02T17:48:24",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T17:48:24+1:00",
            "2026-12-02T17:48:24.Z",
            "2026-12-02T17:48:24Zjunk",
            "２０２６-12-02T17:48:24Z",
            "0000-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_ttl("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_ttl("2w"), Some(Duration::from_secs(14 * 86_400)));
        for bad in [
            "",
            "d",
            "0s",
            "10",
            "10y",
            "-1d",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(c.now_ms(), 10_000);
        c.advance(Duration::from_millis(5));
        assert_eq!(c.now_ms(), 10_005);
        c.set(UNIX_EPOCH);
        assert_eq!(c.now_ms(), 0);
    }
}

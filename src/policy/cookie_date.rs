//! The cookie-date algorithm of RFC 6265bis §5.1.1: how browsers read
//! `Expires`. The gateway must read it the same way to know whether a
//! `Set-Cookie` deletes a cookie or outlives the configured lifetime.

/// Parses a cookie date to seconds since the Unix epoch; `None` where a
/// browser would ignore the attribute.
pub fn parse(s: &[u8]) -> Option<i64> {
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    for token in s.split(|&b| is_delimiter(b)).filter(|t| !t.is_empty()) {
        if time.is_none()
            && let Some(t) = hms(token)
        {
            time = Some(t);
        } else if day.is_none()
            && let Some(d) = digits(token, 1, 2)
        {
            day = Some(d);
        } else if month.is_none()
            && let Some(m) = month_of(token)
        {
            month = Some(m);
        } else if year.is_none()
            // RFC 6265bis reads 2 to 4 digits; Chromium takes more (a date
            // past 9999 is far off either way, which is what the lifetime
            // cap needs to know).
            && let Some(y) = digits(token, 2, 9)
        {
            year = Some(y);
        }
    }
    let (h, mi, sec) = time?;
    let (day, month, mut year) = (day?, month?, year?);
    if (70..=99).contains(&year) {
        year += 1900;
    } else if year <= 69 {
        year += 2000;
    }
    if !(1..=31).contains(&day) || year < 1601 || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    if day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    Some(days * 86_400 + (h * 3600 + mi * 60 + sec) as i64)
}

fn is_delimiter(b: u8) -> bool {
    matches!(b, 0x09 | 0x20..=0x2F | 0x3B..=0x40 | 0x5B..=0x60 | 0x7B..=0x7E)
}

/// `min..=max` digits, then optionally a non-digit and anything.
fn digits(t: &[u8], min: usize, max: usize) -> Option<u32> {
    let n = t.iter().take_while(|b| b.is_ascii_digit()).count();
    if n < min || n > max {
        return None;
    }
    Some(
        t[..n]
            .iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0')),
    )
}

/// `hh:mm:ss` with 1-2 digits each, then optionally a non-digit and anything.
fn hms(t: &[u8]) -> Option<(u32, u32, u32)> {
    let mut parts = [0u32; 3];
    let mut rest = t;
    for (i, part) in parts.iter_mut().enumerate() {
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=2).contains(&n) {
            return None;
        }
        *part = rest[..n]
            .iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
        rest = &rest[n..];
        if i < 2 {
            rest = rest.strip_prefix(b":")?;
        }
    }
    Some((parts[0], parts[1], parts[2]))
}

fn month_of(t: &[u8]) -> Option<u32> {
    if t.len() < 3 {
        return None;
    }
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    MONTHS
        .iter()
        .position(|m| t[..3].eq_ignore_ascii_case(&m[..]))
        .map(|i| i as u32 + 1)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_browsers_accept() {
        let cases: &[(&str, i64)] = &[
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            ("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_480),
            ("Wednesday, 21-Oct-15 07:28:00 GMT", 1_445_412_480),
            ("Wed Oct 21 07:28:00 2015", 1_445_412_480),
            ("21 Oct 2015 07:28:00", 1_445_412_480),
            ("Wed, 21 October 2015 7:28:00 GMT", 1_445_412_480),
            ("Thu, 29 Feb 2024 12:00:00 GMT", 1_709_208_000),
            ("Fri, 01 Jan 1601 00:00:00 GMT", -11_644_473_600),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s.as_bytes()), Some(*want), "{s}");
        }
    }

    #[test]
    fn dates_browsers_ignore() {
        for s in [
            "",
            "tomorrow",
            "Wed, 21 Oct 2015",
            "Wed, 32 Oct 2015 07:28:00",
            "Fri, 30 Feb 2024 00:00:00",
            "21 Oct 1600 00:00:00",
            "21 Oct 2015 24:00:00",
            "21 Foo 2015 07:28:00",
        ] {
            assert_eq!(parse(s.as_bytes()), None, "{s}");
        }
    }
}

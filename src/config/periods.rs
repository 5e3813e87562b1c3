//! The calendar of budget periods: which daily, weekly, monthly or total period a moment
//! falls in, where a period starts and ends, how it is named, and the dates written in the
//! config (`expires`) and in messages.
//!
//! Periods are calendar periods in UTC, computed from the Unix time alone, so that every
//! worker (and every restart) agrees on them without shared state; time is always an
//! argument, because the wasm core has no clock of its own.

const SECS_PER_DAY: u64 = 86_400;

/// How often a budget starts over. Periods are calendar periods in UTC, so every worker
/// (and every restart) agrees on them without shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetDuration {
    /// A UTC day.
    Daily,
    /// An ISO week: Monday 00:00 UTC to the next Monday.
    Weekly,
    /// A calendar month in UTC.
    Monthly,
    /// Never resets.
    Total,
}

impl BudgetDuration {
    /// Every duration, in the order error messages list them.
    pub const ALL: [BudgetDuration; 4] = [
        BudgetDuration::Daily,
        BudgetDuration::Weekly,
        BudgetDuration::Monthly,
        BudgetDuration::Total,
    ];

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            BudgetDuration::Daily => "daily",
            BudgetDuration::Weekly => "weekly",
            BudgetDuration::Monthly => "monthly",
            BudgetDuration::Total => "total",
        }
    }

    /// Parses the config spelling.
    pub fn from_name(name: &str) -> Option<BudgetDuration> {
        BudgetDuration::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The period `now_unix_secs` falls in.
    pub fn period(self, now_unix_secs: u64) -> Period {
        let days = now_unix_secs / SECS_PER_DAY;
        let id = match self {
            BudgetDuration::Daily => days,
            // 1970-01-01 was a Thursday: shifting by 3 days makes weeks start on Monday.
            BudgetDuration::Weekly => (days + 3) / 7,
            BudgetDuration::Monthly => {
                let (y, m, _) = civil_from_days(days as i64);
                (y as u64) * 12 + u64::from(m)
            }
            BudgetDuration::Total => 0,
        };
        Period { duration: self, id }
    }
}

/// One budget period: the store keeps spend per period id, so a new period starts at zero.
///
/// Ids: daily = days since the epoch; weekly = weeks since Monday 1969-12-29 (ISO weeks);
/// monthly = `year * 12 + month` (month 1-12); total = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Which kind of period.
    pub duration: BudgetDuration,
    /// Its id (unique among periods of the same duration).
    pub id: u64,
}

impl Period {
    /// First second of the period (UTC).
    pub fn start_unix_secs(&self) -> u64 {
        match self.duration {
            BudgetDuration::Daily => self.id.saturating_mul(SECS_PER_DAY),
            BudgetDuration::Weekly => self
                .id
                .saturating_mul(7)
                .saturating_sub(3)
                .saturating_mul(SECS_PER_DAY),
            BudgetDuration::Monthly => {
                let (y, m) = month_of(self.id);
                (days_from_civil(y, m, 1).max(0) as u64).saturating_mul(SECS_PER_DAY)
            }
            BudgetDuration::Total => 0,
        }
    }

    /// First second of the next period; `None` for `total`, which never ends.
    pub fn end_unix_secs(&self) -> Option<u64> {
        match self.duration {
            BudgetDuration::Total => None,
            d => Some(
                Period {
                    duration: d,
                    id: self.id.saturating_add(1),
                }
                .start_unix_secs(),
            ),
        }
    }

    /// How people name it: `2026-03-14`, `2026-W11`, `2026-03`, `all time`.
    pub fn label(&self) -> String {
        match self.duration {
            BudgetDuration::Daily => {
                let (y, m, d) = civil_from_days(self.id as i64);
                format!("{y:04}-{m:02}-{d:02}")
            }
            BudgetDuration::Weekly => {
                // The ISO year and week are those of the week's Thursday.
                let thursday = (self.id * 7) as i64;
                let (y, _, _) = civil_from_days(thursday);
                let week = (thursday - days_from_civil(y, 1, 1)) / 7 + 1;
                format!("{y:04}-W{week:02}")
            }
            BudgetDuration::Monthly => {
                let (y, m) = month_of(self.id);
                format!("{y:04}-{m:02}")
            }
            BudgetDuration::Total => "all time".to_string(),
        }
    }
}

fn month_of(id: u64) -> (i64, u32) {
    // id = year * 12 + month, month 1..=12.
    let zero_based = id.saturating_sub(1);
    ((zero_based / 12) as i64, (zero_based % 12) as u32 + 1)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian (H. Hinnant).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// A Unix time as RFC 3339 UTC (`2026-12-31T23:59:59Z`), for messages.
pub fn format_utc(unix_secs: u64) -> String {
    let (y, m, d) = civil_from_days((unix_secs / SECS_PER_DAY) as i64);
    let s = unix_secs % SECS_PER_DAY;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses an expiry: RFC 3339 (`2026-12-31T23:59:59Z`, `...+02:00`, fractions ignored) or
/// a date `YYYY-MM-DD`, which means the end of that day in UTC (its last second).
pub fn parse_expiry(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("`{text}` is not a date: write RFC 3339 (`2026-12-31T23:59:59Z`) or `YYYY-MM-DD` (end of that day, UTC)")
    };
    let b = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let s = b.get(from..from + len)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let (year, month, day) = match (num(0, 4), b.get(4), num(5, 2), b.get(7), num(8, 2)) {
        (Some(y), Some(b'-'), Some(m), Some(b'-'), Some(d)) => (i64::from(y), m, d),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("`{text}` is not a calendar date"));
    }
    if year < 1970 {
        return Err(format!("`{text}` is before 1970"));
    }
    let midnight = days_from_civil(year, month, day) * SECS_PER_DAY as i64;
    if b.len() == 10 {
        return Ok((midnight + SECS_PER_DAY as i64 - 1) as u64);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return Err(bad());
    }
    let (h, mi, s) = match (num(11, 2), b.get(13), num(14, 2), b.get(16), num(17, 2)) {
        (Some(h), Some(b':'), Some(mi), Some(b':'), Some(s)) => (h, mi, s),
        _ => return Err(bad()),
    };
    if h > 23 || mi > 59 || s > 60 {
        return Err(format!("`{text}` has an invalid time of day"));
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let digits = b
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(bad());
        }
        i += digits;
    }
    let offset_secs: i64 = match b.get(i..).unwrap_or_default() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b.get(i + 3) == Some(&b':') => {
            let (Some(oh), Some(om)) = (num(i + 1, 2), num(i + 4, 2)) else {
                return Err(bad());
            };
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => {
            return Err(format!(
                "`{text}` has no time zone: end it with `Z` (UTC) or an offset like `+02:00`"
            ))
        }
    };
    // A leap second (:60) counts as the last second of its minute.
    let secs = midnight + i64::from(h * 3600 + mi * 60 + s.min(59)) - offset_secs;
    u64::try_from(secs).map_err(|_| format!("`{text}` is before 1970"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    /// The Unix time of a UTC date and time of day.
    pub(crate) fn ts(y: i64, m: u32, d: u32, h: u64, mi: u64, s: u64) -> u64 {
        days_from_civil(y, m, d) as u64 * DAY + h * 3600 + mi * 60 + s
    }

    /// Calendar conversions round-trip over four centuries of days.
    #[test]
    fn civil_round_trip() {
        for days in (0..146_097 * 2).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    /// Daily periods change exactly at midnight UTC.
    #[test]
    fn daily_boundaries() {
        let d = BudgetDuration::Daily;
        let before = ts(2026, 3, 14, 23, 59, 59);
        let after = before + 1;
        assert_ne!(d.period(before), d.period(after));
        assert_eq!(d.period(after).id, d.period(after + DAY - 1).id);
        assert_eq!(d.period(before).label(), "2026-03-14");
        assert_eq!(d.period(before).end_unix_secs(), Some(after));
        assert_eq!(d.period(after).start_unix_secs(), after);
    }

    /// Months have their real lengths, leap years included, and roll over the year.
    #[test]
    fn monthly_boundaries() {
        let m = BudgetDuration::Monthly;
        for (y, mo, len) in [
            (2026, 1, 31),
            (2026, 2, 28),
            (2024, 2, 29),
            (2000, 2, 29),
            (2100, 2, 28),
            (2026, 4, 30),
            (2026, 12, 31),
        ] {
            let p = m.period(ts(y, mo, 1, 0, 0, 0));
            assert_eq!(p.id, y as u64 * 12 + u64::from(mo));
            assert_eq!(p.label(), format!("{y:04}-{mo:02}"));
            let last = ts(y, mo, len, 23, 59, 59);
            assert_eq!(m.period(last), p, "{y}-{mo}");
            assert_ne!(m.period(last + 1), p, "{y}-{mo}");
            assert_eq!(p.end_unix_secs(), Some(last + 1));
            assert_eq!(p.start_unix_secs(), ts(y, mo, 1, 0, 0, 0));
        }
        // December to January: consecutive ids.
        let dec = m.period(ts(2025, 12, 31, 12, 0, 0));
        let jan = m.period(ts(2026, 1, 1, 0, 0, 0));
        assert_eq!(jan.id, dec.id + 1);
        assert_eq!(jan.label(), "2026-01");
    }

    /// ISO weeks start on Monday and cross the year boundary whole.
    #[test]
    fn weekly_iso_boundaries() {
        let w = BudgetDuration::Weekly;
        // 2026-01-01 is a Thursday: its ISO week 2026-W01 began Monday 2025-12-29.
        let monday = ts(2025, 12, 29, 0, 0, 0);
        let p = w.period(ts(2026, 1, 1, 12, 0, 0));
        assert_eq!(w.period(monday), p);
        assert_eq!(w.period(ts(2026, 1, 4, 23, 59, 59)), p);
        assert_ne!(w.period(monday - 1), p);
        assert_ne!(w.period(ts(2026, 1, 5, 0, 0, 0)), p);
        assert_eq!(p.label(), "2026-W01");
        assert_eq!(p.start_unix_secs(), monday);
        assert_eq!(p.end_unix_secs(), Some(ts(2026, 1, 5, 0, 0, 0)));
        // 2027-01-01 is a Friday: it belongs to 2026-W53.
        assert_eq!(w.period(ts(2027, 1, 1, 0, 0, 0)).label(), "2026-W53");
        assert_eq!(w.period(ts(2020, 12, 31, 0, 0, 0)).label(), "2020-W53");
        assert_eq!(w.period(ts(2021, 1, 4, 0, 0, 0)).label(), "2021-W01");
        // The epoch itself (a Thursday) is in the week that began 1969-12-29.
        assert_eq!(w.period(0).start_unix_secs(), 0);
        assert_eq!(w.period(0).end_unix_secs(), Some(4 * DAY));
    }

    /// A total budget has one period that never ends.
    #[test]
    fn total_never_resets() {
        let t = BudgetDuration::Total;
        assert_eq!(t.period(0), t.period(u64::from(u32::MAX)));
        assert_eq!(t.period(5).end_unix_secs(), None);
        assert_eq!(t.period(5).label(), "all time");
    }

    /// Expiry accepts RFC 3339 with offsets and fractions, and bare dates as end of day.
    #[test]
    fn expiry_parsing() {
        let end = ts(2026, 12, 31, 23, 59, 59);
        assert_eq!(parse_expiry("2026-12-31T23:59:59Z"), Ok(end));
        assert_eq!(parse_expiry("2026-12-31"), Ok(end));
        assert_eq!(parse_expiry("2026-12-31t23:59:59.999z"), Ok(end));
        assert_eq!(parse_expiry("2027-01-01T01:59:59+02:00"), Ok(end));
        assert_eq!(parse_expiry("2026-12-31T18:59:59-05:00"), Ok(end));
        assert_eq!(parse_expiry("2026-12-31T23:59:60Z"), Ok(end));
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-12-31T24:00:00Z",
            "2026-12-31T23:59:59",
            "31/12/2026",
            "2026-12-31T23:59Z",
            "tomorrow",
            "",
        ] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
        assert_eq!(format_utc(end), "2026-12-31T23:59:59Z");
    }
}

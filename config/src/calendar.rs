//! UTC calendar dates for the timestamps the model's documents carry (milliseconds since the Unix epoch),
//! without a date-time dependency.

/// `YYYY-MM-DD` of a Unix time in seconds (Howard Hinnant's days-to-civil algorithm).
pub fn utc_date(epoch_seconds: u64) -> String {
    let (y, m, d) = civil_from_days((epoch_seconds / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time in milliseconds.
pub fn utc_datetime_ms(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let rem = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        utc_date(secs),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_780_345_978), "2026-06-01");
        assert_eq!(utc_datetime_ms(1_780_345_978_123), "2026-06-01T20:32:58Z");
    }
}

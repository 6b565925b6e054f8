//! The history schema: versioned migrations, applied in order at start-up under an advisory
//! lock (several nodes may start at once), each in its own transaction with its row in
//! `smsgate_history_migrations`. A migration is never edited once released: add the next.
//!
//! `history_events` is partitioned by day on `at_ms` (UTC days); the writer creates a day's
//! partition when the first event of that day arrives and drops partitions past the retention.

/// (version, description, SQL). Versions increase by one.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "history_events, partitioned by day, with its indexes",
    "CREATE TABLE history_events (
        event_id   uuid     NOT NULL,
        at_ms      bigint   NOT NULL,
        kind       text     NOT NULL,
        client     text,
        message_id bigint,
        dest       text,
        link       text,
        status     text,
        layer      text,
        reason     text,
        segments   smallint NOT NULL DEFAULT 0,
        detail     text,
        PRIMARY KEY (event_id, at_ms)
    ) PARTITION BY RANGE (at_ms);
    CREATE INDEX history_events_client_at ON history_events (client, at_ms);
    CREATE INDEX history_events_dest_at ON history_events (dest, at_ms);
    CREATE INDEX history_events_message ON history_events (message_id);
    CREATE INDEX history_events_at ON history_events (at_ms);",
)];

/// Key of the advisory lock that serialises migrations across nodes ("smsgate h" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x736d_7367_6174_6568;

pub const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS smsgate_history_migrations (
    version     integer     PRIMARY KEY,
    description text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)";

/// The columns of `history_events` in the order the writer sends them.
pub const COLUMNS: &str =
    "event_id, at_ms, kind, client, message_id, dest, link, status, layer, reason, segments, detail";

pub const MS_PER_DAY: u64 = 86_400_000;

/// Name of the partition holding day `day` (days since 1970-01-01 UTC): `history_events_YYYYMMDD`.
pub fn partition_name(day: u64) -> String {
    let (y, m, d) = civil_from_days(day as i64);
    format!("history_events_{y:04}{m:02}{d:02}")
}

/// The day a partition name holds, if it is one of ours.
pub fn partition_day(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("history_events_")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (digits[..4].parse().ok()?, digits[4..6].parse().ok()?, digits[6..].parse().ok()?);
    u64::try_from(days_from_civil(y, m, d)).ok()
}

/// `CREATE TABLE IF NOT EXISTS` for day `day`'s partition.
pub fn create_partition(day: u64) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF history_events FOR VALUES FROM ({}) TO ({})",
        partition_name(day),
        day * MS_PER_DAY,
        (day + 1) * MS_PER_DAY
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_follow_the_calendar() {
        assert_eq!(partition_name(0), "history_events_19700101");
        // 2026-12-04 is day 20791.
        assert_eq!(partition_name(20_791), "history_events_20261204");
        assert_eq!(partition_name(20_513), "history_events_20260301");
        assert_eq!(partition_name(19_782), "history_events_20240229");
        for day in [0u64, 59, 60, 365, 11_016, 19_782, 20_791, 40_000] {
            assert_eq!(partition_day(&partition_name(day)), Some(day));
        }
        assert_eq!(partition_day("history_events"), None);
        assert_eq!(partition_day("history_events_2026120x"), None);
    }
}

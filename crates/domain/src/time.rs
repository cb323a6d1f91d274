//! Timestamps on the wire: `received` as float seconds with millisecond precision,
//! `signedUpAt` as ISO 8601 with milliseconds and `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `received`: seconds since the epoch as a float with millisecond precision.
pub fn received(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Parses a `received` float back into milliseconds.
pub fn received_to_ms(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// ISO 8601 with milliseconds and `Z`, as in `2015-10-06T03:38:02.346Z`.
pub fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an ISO 8601 timestamp (any offset) into milliseconds since the epoch.
pub fn parse_iso(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

/// Milliseconds since the epoch to a chrono timestamp (for storage).
pub fn to_datetime(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_millis_and_z() {
        assert_eq!(iso(1_444_348_338_704), "2015-10-08T23:52:18.704Z");
        assert_eq!(
            parse_iso("2015-10-08T23:52:18.704Z"),
            Some(1_444_348_338_704)
        );
        assert_eq!(parse_iso("yesterday"), None);
    }

    #[test]
    fn received_is_float_seconds() {
        assert_eq!(received(1_444_348_338_704), 1_444_348_338.704);
        assert_eq!(received_to_ms(1_444_348_338.704), 1_444_348_338_704);
    }
}

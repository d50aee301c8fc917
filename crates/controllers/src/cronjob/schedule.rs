//! Cron schedules as CronJobs use them: five fields or a descriptor (`@hourly`,
//! `@daily`, ...), read in an IANA time zone, and upstream's "most recent missed start"
//! arithmetic (including the "too many missed start times" limit of 100).

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, Zoned};

/// Upstream gives up counting missed starts past this many.
pub const MANY_MISSED: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("unparseable schedule: {schedule:?} : {reason}")]
    Unparseable { schedule: String, reason: String },
    #[error("invalid timeZone: {zone:?}: {reason}")]
    UnknownTimeZone { zone: String, reason: String },
}

#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

/// The start times due between the earliest time that counts and now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missed {
    /// Nothing due yet.
    None,
    /// The latest due start and how many were missed (estimated from the interval
    /// between two starts, as upstream, once past [`MANY_MISSED`]).
    Due { at: Timestamp, missed: u64 },
}

impl Schedule {
    /// Parses `schedule` for `time_zone` (`None`: the controller's own zone, as
    /// upstream uses kube-controller-manager's).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let tz = match time_zone {
            None => TimeZone::system(),
            Some(zone) => TimeZone::get(zone).map_err(|e| ScheduleError::UnknownTimeZone {
                zone: zone.to_string(),
                reason: e.to_string(),
            })?,
        };
        let unparseable = |reason: String| ScheduleError::Unparseable {
            schedule: schedule.to_string(),
            reason,
        };
        let trimmed = schedule.trim();
        if trimmed.starts_with("@every") {
            // robfig's @every is accepted upstream but not by Skiff (see the report).
            return Err(unparseable("@every is not supported".into()));
        }
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && fields != 5 {
            return Err(unparseable(format!(
                "expected exactly 5 fields, found {fields}"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(trimmed)
            .map_err(|e| unparseable(e.to_string()))?;
        Ok(Self { cron, tz })
    }

    /// The first start strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let z = t.to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&z, false)
            .ok()
            .map(|z: Zoned| z.timestamp())
    }

    /// The latest start in `(earliest, now]` and how many starts were missed.
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp) -> Missed {
        let Some(first) = self.next_after(earliest).filter(|t| *t <= now) else {
            return Missed::None;
        };
        let mut latest = first;
        let mut count = 1;
        while let Some(t) = self.next_after(latest).filter(|t| *t <= now) {
            count += 1;
            latest = t;
            if count > MANY_MISSED {
                let second = self.next_after(first).unwrap_or(first);
                // Jump straight to the last one instead of walking the rest.
                let at = self
                    .cron
                    .find_previous_occurrence(&now.to_zoned(self.tz.clone()), true)
                    .map(|z| z.timestamp())
                    .unwrap_or(latest);
                let step = (second.as_second() - first.as_second()).max(1);
                let missed = ((now.as_second() - first.as_second()) / step + 1) as u64;
                return Missed::Due { at, missed };
            }
        }
        Missed::Due {
            at: latest,
            missed: count as u64,
        }
    }

    /// The scheduled time as upstream writes it in the Job's
    /// `batch.kubernetes.io/cronjob-scheduled-timestamp` annotation (RFC 3339 in the zone).
    pub fn rfc3339(&self, t: Timestamp) -> String {
        let z = t.to_zoned(self.tz.clone());
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parse_errors() {
        for (name, sched, tz, ok) in [
            ("five fields", "*/5 * * * *", None, true),
            ("hourly descriptor", "@hourly", None, true),
            ("names", "0 9 * JAN-MAR MON-FRI", Some("UTC"), true),
            ("six fields refused", "0 * * * * *", None, false),
            ("garbage", "every day", None, false),
            ("out of range minute", "61 * * * *", None, false),
            ("unknown zone", "* * * * *", Some("Mars/Olympus"), false),
            ("@every refused", "@every 5m", None, false),
        ] {
            assert_eq!(Schedule::parse(sched, tz).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn next_and_most_recent() {
        let every_min = Schedule::parse("* * * * *", Some("UTC")).unwrap();
        let hourly = Schedule::parse("@hourly", Some("UTC")).unwrap();
        let ny_nine = Schedule::parse("0 9 * * *", Some("America/New_York")).unwrap();
        let cases: Vec<(&str, &Schedule, &str, &str, Missed)> = vec![
            (
                "nothing due before the first tick",
                &every_min,
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:30Z",
                Missed::None,
            ),
            (
                "one tick due",
                &every_min,
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:01:10Z",
                Missed::Due {
                    at: ts("2026-01-01T00:01:00Z"),
                    missed: 1,
                },
            ),
            (
                "several missed: the latest wins",
                &hourly,
                "2026-01-01T00:00:00Z",
                "2026-01-01T05:30:00Z",
                Missed::Due {
                    at: ts("2026-01-01T05:00:00Z"),
                    missed: 5,
                },
            ),
            (
                "more than a hundred missed",
                &every_min,
                "2026-01-01T00:00:00Z",
                "2026-01-01T03:00:00Z",
                Missed::Due {
                    at: ts("2026-01-01T03:00:00Z"),
                    missed: 180,
                },
            ),
            (
                "time zone: 09:00 New York is 14:00 UTC in winter",
                &ny_nine,
                "2026-01-01T00:00:00Z",
                "2026-01-01T20:00:00Z",
                Missed::Due {
                    at: ts("2026-01-01T14:00:00Z"),
                    missed: 1,
                },
            ),
            (
                "time zone: and 13:00 UTC in summer",
                &ny_nine,
                "2026-07-01T00:00:00Z",
                "2026-07-01T20:00:00Z",
                Missed::Due {
                    at: ts("2026-07-01T13:00:00Z"),
                    missed: 1,
                },
            ),
        ];
        for (name, s, earliest, now, want) in cases {
            assert_eq!(s.most_recent(ts(earliest), ts(now)), want, "{name}");
        }
        assert_eq!(
            hourly.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T01:00:00Z"))
        );
        assert_eq!(
            ny_nine.rfc3339(ts("2026-01-01T14:00:00Z")),
            "2026-01-01T09:00:00-05:00"
        );
    }
}

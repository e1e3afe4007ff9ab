//! When probes run: crontab expressions with POSIX/Vixie semantics (0 and 7
//! are Sunday, month and weekday names, `@annually`/`@midnight`, and the
//! day-of-month/day-of-week rule: OR, or AND when either field starts with `*`), evaluated in an IANA time zone so that
//! `0 9 * * 1-5` means 09:00 local time on working days across DST changes.
//! Parsing and DST handling come from `croner` and `chrono-tz`; what is ours
//! is the macro list, Vixie's day-field rule, the error text and the per-instance jitter.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use sha2::{Digest, Sha256};

/// Macros accepted in place of five fields, with what they stand for.
/// `@midnight` is Vixie's synonym of `@daily`, which croner does not know.
const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Default jitter: this share of the schedule's interval…
pub const DEFAULT_JITTER_SHARE: f64 = 0.05;
/// …but never more than this.
pub const DEFAULT_JITTER_CAP: Duration = Duration::from_secs(300);

/// A cron schedule with the text it was written as, the zone it is read in,
/// and the largest start offset given to its instances.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written in the config (trimmed).
    pub text: String,
    cron: Cron,
    /// The zone the expression is read in (UTC unless configured).
    pub timezone: Tz,
    /// Each instance starts this much after the cron time at most; its own
    /// offset is fixed by a hash of its instance id. Zero turns it off.
    pub jitter: Duration,
}

impl Schedule {
    /// Parses 5-field crontab, 6-field with seconds first, or a macro, read in
    /// UTC with no jitter; see [`Schedule::in_zone`] and [`Schedule::with_jitter`].
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let trimmed = text.trim();
        let expression = if trimmed.starts_with('@') {
            let lower = trimmed.to_ascii_lowercase();
            match MACROS.iter().find(|(name, _)| *name == lower) {
                Some((_, fields)) => *fields,
                None => {
                    let names: Vec<&str> = MACROS.iter().map(|(name, _)| *name).collect();
                    return Err(format!(
                        "invalid cron expression {trimmed:?}: unknown macro; use one of {}",
                        names.join(", ")
                    ));
                }
            }
        } else {
            let fields = trimmed.split_whitespace().count();
            if fields != 5 && fields != 6 {
                return Err(format!(
                    "invalid cron expression {trimmed:?}: expected 5 or 6 fields, or @hourly/@daily, found {fields}"
                ));
            }
            trimmed
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .dom_and_dow(vixie_days_and(expression))
            .build();
        let cron = parser
            .parse(&spell_out_stars_in_lists(expression))
            .map_err(|err| {
                format!(
                    "invalid cron expression {trimmed:?}: {}",
                    err.to_string().trim_end_matches('.')
                )
            })?;
        let schedule = Schedule {
            text: trimmed.to_string(),
            cron,
            timezone: Tz::UTC,
            jitter: Duration::ZERO,
        };
        // A valid expression that never fires (`0 0 30 2 *`) is a mistake.
        let reference = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("valid instant");
        if schedule.next_cron_time(reference).is_none() {
            return Err(format!(
                "invalid cron expression {trimmed:?}: it never fires"
            ));
        }
        Ok(schedule)
    }

    /// The same schedule read in `timezone`.
    pub fn in_zone(mut self, timezone: Tz) -> Schedule {
        self.timezone = timezone;
        self
    }

    /// The same schedule with `jitter` as its largest start offset.
    pub fn with_jitter(mut self, jitter: Duration) -> Schedule {
        self.jitter = jitter;
        self
    }

    /// The first cron time strictly after `after`, without jitter.
    pub fn next_cron_time(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|time| time.with_timezone(&Utc))
    }

    /// The next firing strictly after `after`, without jitter.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_cron_time(after)
    }

    /// The next `count` cron times after `after`, without jitter.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(count);
        let mut cursor = after;
        while times.len() < count {
            match self.next_cron_time(cursor) {
                Some(next) => {
                    times.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        times
    }

    /// The shortest gap between consecutive firings over the next few days
    /// from `from`: what "interval" means for a schedule like `0 9 * * 1-5`.
    pub fn shortest_interval(&self, from: DateTime<Utc>) -> Option<Duration> {
        self.upcoming(from, 16)
            .windows(2)
            .filter_map(|pair| (pair[1] - pair[0]).to_std().ok())
            .min()
    }

    /// This instance's start offset: a fraction of `jitter` fixed by a hash of
    /// the instance id, so it is the same on every run and every restart.
    pub fn offset(&self, instance: &str) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        let digest = Sha256::digest(instance.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let fraction = u64::from_be_bytes(first) as f64 / (u64::MAX as f64 + 1.0);
        Duration::from_millis((self.jitter.as_millis() as f64 * fraction) as u64)
    }

    /// When `instance` next starts after `after`: the next cron time plus its offset.
    pub fn next_run(&self, instance: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The run whose cron time has passed but whose offset has not is still due.
        let earliest = after - chrono::Duration::from_std(self.jitter).unwrap_or_default();
        let offset = chrono::Duration::from_std(self.offset(instance)).unwrap_or_default();
        let mut cursor = earliest;
        loop {
            let cron_time = self.next_cron_time(cursor)?;
            if cron_time + offset > after {
                return Some(cron_time + offset);
            }
            cursor = cron_time;
        }
    }
}

/// Vixie cron's rule for the two day fields: a day must match both when
/// either field *starts with* `*` (so `*/2` and `*,10` count as unrestricted),
/// and either one otherwise. Vixie and cronie decide this from the field's
/// first character before parsing (`if (ch == '*') e->flags |= DOM_STAR;` in
/// entry.c, `(DOM_STAR|DOW_STAR) ? dom && dow : dom || dow` in cron.c);
/// croner alone treats only a bare `*` that way, and would OR `0 0 */2 * 1`
/// into "odd days, and Mondays".
fn vixie_days_and(expression: &str) -> bool {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let (day_of_month, day_of_week) = match fields.len() {
        6 => (fields[3], fields[5]),
        _ => (
            fields.get(2).copied().unwrap_or("*"),
            fields.get(4).copied().unwrap_or("*"),
        ),
    };
    day_of_month.starts_with('*') || day_of_week.starts_with('*')
}

/// Vixie accepts `*` as one element of a list (`*,10`); croner does not.
/// Such an element is the whole range, so it is written out as that range
/// (the AND/OR choice was already made from the text as written).
fn spell_out_stars_in_lists(expression: &str) -> String {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let ranges: &[&str] = match fields.len() {
        6 => &["0-59", "0-59", "0-23", "1-31", "1-12", "0-7"],
        _ => &["0-59", "0-23", "1-31", "1-12", "0-7"],
    };
    fields
        .iter()
        .zip(ranges)
        .map(|(field, range)| {
            if !field.contains(',') {
                return field.to_string();
            }
            let elements: Vec<&str> = field
                .split(',')
                .map(|element| if element == "*" { *range } else { element })
                .collect();
            elements.join(",")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The jitter used when none is configured: a few percent of the interval, capped.
pub fn default_jitter(interval: Option<Duration>) -> Duration {
    let Some(interval) = interval else {
        return Duration::ZERO;
    };
    let share = Duration::from_secs_f64(interval.as_secs_f64() * DEFAULT_JITTER_SHARE);
    Duration::from_secs(share.as_secs()).min(DEFAULT_JITTER_CAP)
}

/// Parses an IANA zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(text: &str) -> Result<Tz, String> {
    let text = text.trim();
    text.parse::<Tz>().map_err(|_| {
        let suggestion = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name())
            .map(|name| {
                (
                    strsim::levenshtein(&text.to_ascii_lowercase(), &name.to_ascii_lowercase()),
                    name,
                )
            })
            .filter(|(distance, _)| *distance <= 3)
            .min();
        match suggestion {
            Some((_, name)) => format!("unknown time zone {text:?}; did you mean {name:?}?"),
            None => format!(
                "unknown time zone {text:?}; use an IANA name such as \"UTC\" or \"Europe/Berlin\""
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// For each expression and zone: the next five fire times (in UTC) after
    /// a fixed instant, Friday 2026-03-27 12:00 UTC. The week spans the
    /// European DST change (Sunday 29 March, 01:00 UTC) and follows the US one.
    #[test]
    fn next_five_fire_times_per_expression_and_zone() {
        let from = at("2026-03-27T12:00:00Z");
        #[rustfmt::skip]
        let table: &[(&str, &str, [&str; 5])] = &[
            // Weekdays are 0-6 from Sunday: 1-5 is Monday to Friday.
            ("0 9 * * 1-5", "UTC", ["2026-03-30T09:00:00Z", "2026-03-31T09:00:00Z", "2026-04-01T09:00:00Z", "2026-04-02T09:00:00Z", "2026-04-03T09:00:00Z"]),
            // 09:00 in Berlin is 08:00 UTC before the change, 07:00 UTC after.
            ("0 9 * * 1-5", "Europe/Berlin", ["2026-03-30T07:00:00Z", "2026-03-31T07:00:00Z", "2026-04-01T07:00:00Z", "2026-04-02T07:00:00Z", "2026-04-03T07:00:00Z"]),
            // New York changed on 8 March: 09:00 EDT is 13:00 UTC, still to come today.
            ("0 9 * * mon-fri", "America/New_York", ["2026-03-27T13:00:00Z", "2026-03-30T13:00:00Z", "2026-03-31T13:00:00Z", "2026-04-01T13:00:00Z", "2026-04-02T13:00:00Z"]),
            // 0 and 7 are both Sunday.
            ("0 12 * * 0", "UTC", ["2026-03-29T12:00:00Z", "2026-04-05T12:00:00Z", "2026-04-12T12:00:00Z", "2026-04-19T12:00:00Z", "2026-04-26T12:00:00Z"]),
            ("0 12 * * 7", "UTC", ["2026-03-29T12:00:00Z", "2026-04-05T12:00:00Z", "2026-04-12T12:00:00Z", "2026-04-19T12:00:00Z", "2026-04-26T12:00:00Z"]),
            ("0 12 * * SUN", "UTC", ["2026-03-29T12:00:00Z", "2026-04-05T12:00:00Z", "2026-04-12T12:00:00Z", "2026-04-19T12:00:00Z", "2026-04-26T12:00:00Z"]),
            // Day of month OR day of week when both are restricted: the 1st, and every Monday.
            ("0 0 1 * 1", "UTC", ["2026-03-30T00:00:00Z", "2026-04-01T00:00:00Z", "2026-04-06T00:00:00Z", "2026-04-13T00:00:00Z", "2026-04-20T00:00:00Z"]),
            // Vixie: a day field starting with `*` makes the two fields AND, even `*/2` or `*,10`.
            // Odd days that are Mondays:
            ("0 0 */2 * 1", "UTC", ["2026-04-13T00:00:00Z", "2026-04-27T00:00:00Z", "2026-05-11T00:00:00Z", "2026-05-25T00:00:00Z", "2026-06-01T00:00:00Z"]),
            // The 1st of a month that falls on Sunday, Tuesday, Thursday or Saturday:
            ("0 0 1 * */2", "UTC", ["2026-08-01T00:00:00Z", "2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"]),
            ("0 0 0 */2 * 1", "UTC", ["2026-04-13T00:00:00Z", "2026-04-27T00:00:00Z", "2026-05-11T00:00:00Z", "2026-05-25T00:00:00Z", "2026-06-01T00:00:00Z"]),
            // The same odd days written as a range start with a digit: odd days OR Mondays.
            ("0 0 1-31/2 * 1", "UTC", ["2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z", "2026-03-31T00:00:00Z", "2026-04-01T00:00:00Z", "2026-04-03T00:00:00Z"]),
            // One set, two spellings, two meanings (as in Vixie): `*,10` ANDs → Tuesdays; `10,*` ORs → every day.
            ("0 12 *,10 * 2", "UTC", ["2026-03-31T12:00:00Z", "2026-04-07T12:00:00Z", "2026-04-14T12:00:00Z", "2026-04-21T12:00:00Z", "2026-04-28T12:00:00Z"]),
            ("0 12 10,* * 2", "UTC", ["2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z", "2026-03-30T12:00:00Z", "2026-03-31T12:00:00Z", "2026-04-01T12:00:00Z"]),
            ("0 12 13 * 2,*", "UTC", ["2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z", "2026-03-30T12:00:00Z", "2026-03-31T12:00:00Z", "2026-04-01T12:00:00Z"]),
            // `*,2` in the day of week ANDs: the 13th when it is a Tuesday, or any weekday → every 13th.
            ("0 12 13 * *,2", "UTC", ["2026-04-13T12:00:00Z", "2026-05-13T12:00:00Z", "2026-06-13T12:00:00Z", "2026-07-13T12:00:00Z", "2026-08-13T12:00:00Z"]),
            // A bare `*` in either field: the other one decides.
            ("0 0 13 * *", "UTC", ["2026-04-13T00:00:00Z", "2026-05-13T00:00:00Z", "2026-06-13T00:00:00Z", "2026-07-13T00:00:00Z", "2026-08-13T00:00:00Z"]),
            ("*/15 * * * *", "UTC", ["2026-03-27T12:15:00Z", "2026-03-27T12:30:00Z", "2026-03-27T12:45:00Z", "2026-03-27T13:00:00Z", "2026-03-27T13:15:00Z"]),
            // Every 15 minutes stays every 15 minutes in any zone.
            ("*/15 * * * *", "Europe/Berlin", ["2026-03-27T12:15:00Z", "2026-03-27T12:30:00Z", "2026-03-27T12:45:00Z", "2026-03-27T13:00:00Z", "2026-03-27T13:15:00Z"]),
            // 02:30 does not exist in Berlin on 29 March: that day it runs at 03:00 local (01:00 UTC).
            ("30 2 * * *", "Europe/Berlin", ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z", "2026-04-01T00:30:00Z"]),
            ("@midnight", "UTC", ["2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z", "2026-03-31T00:00:00Z", "2026-04-01T00:00:00Z"]),
            ("@daily", "Asia/Tokyo", ["2026-03-27T15:00:00Z", "2026-03-28T15:00:00Z", "2026-03-29T15:00:00Z", "2026-03-30T15:00:00Z", "2026-03-31T15:00:00Z"]),
            ("@annually", "UTC", ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z", "2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z"]),
            ("@yearly", "Australia/Sydney", ["2026-12-31T13:00:00Z", "2027-12-31T13:00:00Z", "2028-12-31T13:00:00Z", "2029-12-31T13:00:00Z", "2030-12-31T13:00:00Z"]),
            ("@weekly", "UTC", ["2026-03-29T00:00:00Z", "2026-04-05T00:00:00Z", "2026-04-12T00:00:00Z", "2026-04-19T00:00:00Z", "2026-04-26T00:00:00Z"]),
            ("@monthly", "UTC", ["2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z"]),
            ("@hourly", "Asia/Kolkata", ["2026-03-27T12:30:00Z", "2026-03-27T13:30:00Z", "2026-03-27T14:30:00Z", "2026-03-27T15:30:00Z", "2026-03-27T16:30:00Z"]),
            ("0 0 * JAN,jul *", "UTC", ["2026-07-01T00:00:00Z", "2026-07-02T00:00:00Z", "2026-07-03T00:00:00Z", "2026-07-04T00:00:00Z", "2026-07-05T00:00:00Z"]),
            // Six fields: seconds first.
            ("30 0 12 * * *", "UTC", ["2026-03-27T12:00:30Z", "2026-03-28T12:00:30Z", "2026-03-29T12:00:30Z", "2026-03-30T12:00:30Z", "2026-03-31T12:00:30Z"]),
        ];
        for (expression, zone, expected) in table {
            let schedule = Schedule::parse(expression)
                .unwrap_or_else(|e| panic!("{e}"))
                .in_zone(parse_timezone(zone).unwrap());
            let got: Vec<String> = schedule
                .upcoming(from, 5)
                .iter()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .collect();
            assert_eq!(got, expected.to_vec(), "{expression} in {zone}");
        }
    }

    #[test]
    fn the_repeated_hour_in_autumn_runs_once() {
        // Berlin falls back on 25 October 2026: 02:30 local happens twice.
        let schedule = Schedule::parse("30 2 * * *")
            .unwrap()
            .in_zone(parse_timezone("Europe/Berlin").unwrap());
        let times = schedule.upcoming(at("2026-10-24T12:00:00Z"), 3);
        assert_eq!(
            times,
            [
                at("2026-10-25T00:30:00Z"),
                at("2026-10-26T01:30:00Z"),
                at("2026-10-27T01:30:00Z")
            ]
        );
    }

    #[test]
    fn bad_expressions_say_why_on_one_line() {
        for (expression, wanted) in [
            ("* * *", "expected 5 or 6 fields"),
            ("61 * * * *", "invalid cron expression \"61 * * * *\": "),
            ("@sometimes", "unknown macro"),
            ("@reboot", "unknown macro"),
            ("*/0 * * * *", "invalid cron expression"),
            ("0 0 30 2 *", "never fires"),
            ("0 0 * * 8", "invalid cron expression"),
            ("1 2 3 4 5 6 7", "expected 5 or 6 fields"),
        ] {
            let err = Schedule::parse(expression).unwrap_err();
            assert!(err.contains(wanted), "{expression}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = parse_timezone("Europe/Berln").unwrap_err();
        assert!(err.contains("did you mean \"Europe/Berlin\""), "{err}");
        assert!(parse_timezone("Mars/Olympus").unwrap_err().contains("IANA"));
    }

    #[test]
    fn jitter_is_stable_per_instance_and_spreads_instances() {
        let schedule = Schedule::parse("*/15 * * * *")
            .unwrap()
            .with_jitter(Duration::from_secs(45));
        assert_eq!(schedule.offset("web"), schedule.offset("web"));
        let offsets: std::collections::BTreeSet<u128> = (0..200)
            .map(|i| schedule.offset(&format!("probe-{i}")).as_millis())
            .collect();
        // 200 probes on */15 do not all start in the same second.
        assert!(offsets.len() > 150, "{}", offsets.len());
        assert!(offsets.iter().all(|ms| *ms < 45_000));
        let from = at("2026-03-27T12:01:00Z");
        let offset = chrono::Duration::from_std(schedule.offset("web")).unwrap();
        assert_eq!(
            schedule.next_run("web", from),
            Some(at("2026-03-27T12:15:00Z") + offset)
        );
        // Between a cron time and the instance's offset, that run is still next.
        let inside = at("2026-03-27T12:15:00Z") + offset / 2;
        assert_eq!(
            schedule.next_run("web", inside),
            Some(at("2026-03-27T12:15:00Z") + offset)
        );
        assert_eq!(
            Schedule::parse("*/15 * * * *").unwrap().offset("web"),
            Duration::ZERO
        );
    }

    #[test]
    fn default_jitter_is_a_few_percent_capped() {
        let from = at("2026-03-27T12:00:00Z");
        let every = |text: &str| Schedule::parse(text).unwrap().shortest_interval(from);
        assert_eq!(
            default_jitter(every("*/15 * * * *")),
            Duration::from_secs(45)
        );
        assert_eq!(default_jitter(every("@hourly")), Duration::from_secs(180));
        assert_eq!(default_jitter(every("@daily")), DEFAULT_JITTER_CAP);
        assert_eq!(default_jitter(every("0 9 * * 1-5")), DEFAULT_JITTER_CAP);
        assert_eq!(default_jitter(every("* * * * *")), Duration::from_secs(3));
    }
}

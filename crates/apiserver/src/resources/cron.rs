//! A small parser for CronJob schedules: the standard five fields (minute, hour, day of
//! month, month, day of week) with lists, ranges, steps and month/day names, plus the
//! `@hourly`-style descriptors and `@every <duration>`. It only checks a schedule (the
//! CronJob controller computes run times); the error texts follow the parser upstream uses
//! so `kubectl` users see the messages they know.

/// One field's name and bounds, with the names it accepts (lower case, index = value).
struct Field {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MONTHS: &[(&str, u32)] = &[
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
];

const DAYS: &[(&str, u32)] = &[
    ("sun", 0),
    ("mon", 1),
    ("tue", 2),
    ("wed", 3),
    ("thu", 4),
    ("fri", 5),
    ("sat", 6),
];

const FIELDS: [Field; 5] = [
    Field {
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        min: 1,
        max: 12,
        names: MONTHS,
    },
    Field {
        min: 0,
        max: 6,
        names: DAYS,
    },
];

const DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Checks a schedule; the error says what is wrong.
pub fn parse(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    // A leading TZ=/CRON_TZ= names a zone; the rest is the schedule.
    let spec = match spec
        .strip_prefix("TZ=")
        .or_else(|| spec.strip_prefix("CRON_TZ="))
    {
        Some(rest) => {
            let (zone, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            if jiff::tz::TimeZone::get(zone).is_err() {
                return Err(format!(
                    "provided bad location {zone}: unknown time zone {zone}"
                ));
            }
            rest.trim()
        }
        None => spec,
    };
    if spec.starts_with('@') {
        return descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (text, field) in fields.iter().zip(FIELDS.iter()) {
        for part in text.split(',') {
            range(part, field)?;
        }
    }
    Ok(())
}

fn descriptor(spec: &str) -> Result<(), String> {
    if DESCRIPTORS.contains(&spec) {
        return Ok(());
    }
    if let Some(d) = spec.strip_prefix("@every ") {
        return duration(d.trim())
            .map_err(|_| format!("failed to parse duration {spec}: invalid duration {d:?}"));
    }
    Err(format!("unrecognized descriptor: {spec}"))
}

/// A duration in the `1h30m`, `90s`, `1.5h` style.
fn duration(s: &str) -> Result<(), ()> {
    if s == "0" {
        return Ok(());
    }
    let mut rest = s;
    if rest.is_empty() {
        return Err(());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or(())?;
        if digits == 0 || rest[..digits].parse::<f64>().is_err() {
            return Err(());
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(*u))
            .max_by_key(|u| u.len())
            .ok_or(())?;
        rest = &rest[unit.len()..];
    }
    Ok(())
}

/// One element of a field's list: `*`, `?`, `n`, `a-b`, each optionally `/step`.
fn range(expr: &str, field: &Field) -> Result<(), String> {
    let (span, step) = match expr.split('/').collect::<Vec<_>>().as_slice() {
        [span] => (*span, None),
        [span, step] => (*span, Some(*step)),
        _ => return Err(format!("too many slashes: {expr}")),
    };
    let bounds: Vec<&str> = span.split('-').collect();
    let (start, end) = match bounds.as_slice() {
        ["*" | "?"] => (field.min, field.max),
        [one] => {
            let n = value(one, field)?;
            // `n/step` runs from n to the field's maximum.
            (n, if step.is_some() { field.max } else { n })
        }
        [a, b] => (value(a, field)?, value(b, field)?),
        _ => return Err(format!("too many hyphens: {expr}")),
    };
    if let Some(step) = step {
        let n = number(step)?;
        if n == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < field.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            field.min
        ));
    }
    if end > field.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            field.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

fn value(s: &str, field: &Field) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    match field.names.iter().find(|(name, _)| *name == lower) {
        Some((_, v)) => Ok(*v),
        None => number(s),
    }
}

fn number(s: &str) -> Result<u32, String> {
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {s}")),
        Ok(n) => u32::try_from(n)
            .map_err(|_| format!("failed to parse int from {s}: value out of range")),
        Err(_) => Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_schedules_and_descriptors_parse() {
        for ok in [
            "*/5 * * * *",
            "0 0 * * *",
            "0,15,30,45 9-17 * * MON-FRI",
            "5 4 1 jan,jul sun",
            "0 */2 1-15/3 * ?",
            "59 23 31 12 6",
            "30 4/6 * * *",
            "@hourly",
            "@daily",
            "@every 1h30m",
            "TZ=Europe/Berlin 0 3 * * *",
        ] {
            assert_eq!(parse(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let cases = [
            ("", "empty spec string"),
            ("x", "expected exactly 5 fields, found 1: [x]"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* 24 * * *", "end of range (24) above maximum (23): 24"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            (
                "TZ=Nowhere/Special * * * * *",
                "provided bad location Nowhere/Special: unknown time zone Nowhere/Special",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec), Err(want.to_string()), "{spec:?}");
        }
        let e = parse("a * * * *").unwrap_err();
        assert!(e.starts_with("failed to parse int from a"), "{e}");
        assert!(parse("@every 5x").is_err());
    }
}

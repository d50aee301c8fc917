//! CRI container log files, read as the kubelet reads them: every line is
//! `<RFC3339Nano time> <stdout|stderr> <F|P> <message>`; `P` (partial) lines continue in
//! the next line of the same stream and are joined here into one line. The options are
//! the log subresource's (tailLines, sinceSeconds/sinceTime, timestamps, limitBytes).
//!
//! Pure functions over bytes: the server module does the file IO and following.

use std::collections::HashMap;

use jiff::Timestamp;

/// What the client asked for (upstream's `PodLogOptions`, minus the container).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    /// Lines older than this are skipped (sinceSeconds or sinceTime).
    pub since: Option<Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
}

fn flag(q: &HashMap<String, String>, key: &str) -> Result<bool, String> {
    match q.get(key).map(String::as_str) {
        None | Some("" | "false" | "0" | "False") => Ok(false),
        Some("true" | "1" | "True") => Ok(true),
        Some(v) => Err(format!("invalid value {v:?} for {key}: want true or false")),
    }
}

fn number(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, String> {
    match q.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("invalid value {v:?} for {key}: want an integer")),
    }
}

impl LogOptions {
    /// Reads the kubelet's query parameters (the API server passes the log subresource's
    /// through under the same names). `now` anchors sinceSeconds.
    pub fn from_query(q: &HashMap<String, String>, now: Timestamp) -> Result<Self, String> {
        let tail = number(q, "tailLines")?;
        if tail.is_some_and(|n| n < 0) {
            return Err("tailLines: must be greater than or equal to 0".into());
        }
        let limit = number(q, "limitBytes")?;
        if limit.is_some_and(|n| n < 1) {
            return Err("limitBytes: must be greater than 0".into());
        }
        let since_seconds = number(q, "sinceSeconds")?;
        if since_seconds.is_some_and(|n| n < 1) {
            return Err("sinceSeconds: must be greater than 0".into());
        }
        let since_time = match q.get("sinceTime").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                v.parse::<Timestamp>()
                    .map_err(|e| format!("sinceTime {v:?}: {e}"))?,
            ),
        };
        if since_seconds.is_some() && since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        let since = match (since_seconds, since_time) {
            (Some(secs), _) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(secs))
                    .unwrap_or(Timestamp::MIN),
            ),
            (None, t) => t,
        };
        Ok(Self {
            follow: flag(q, "follow")?,
            previous: flag(q, "previous")?,
            tail_lines: tail.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            since,
            timestamps: flag(q, "timestamps")?,
            limit_bytes: limit.map(|n| n as u64),
        })
    }
}

/// One parsed line of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: Timestamp,
    pub stream: &'a str,
    pub partial: bool,
    pub message: &'a [u8],
}

/// Parses one line (without its trailing newline). Lines that do not follow the format
/// (a file being written by something else) yield `None` and are skipped, as the kubelet
/// skips them.
pub fn parse_line(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Record {
        time,
        stream,
        partial,
        message: parts.next().unwrap_or(b""),
    })
}

/// A whole output line: partial records joined, stamped with its first record's time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub time: Timestamp,
    pub text: Vec<u8>,
}

impl Line {
    /// The bytes sent to the client: the text and a newline, prefixed by the fixed-width
    /// RFC 3339 time (nine fraction digits, as the kubelet writes) when asked for.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 32);
        if timestamps {
            out.extend_from_slice(format_time(self.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.text);
        out.push(b'\n');
        out
    }
}

pub fn format_time(t: Timestamp) -> String {
    let utc = t.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "{}.{:09}Z",
        utc.strftime("%Y-%m-%dT%H:%M:%S"),
        utc.subsec_nanosecond()
    )
}

/// Joins records into lines, one partial buffer per stream (stdout and stderr interleave
/// in the file). Feed it file lines in order; it hands back finished lines.
#[derive(Default)]
pub struct Joiner {
    pending: HashMap<String, Line>,
}

impl Joiner {
    pub fn push(&mut self, raw: &[u8]) -> Option<Line> {
        let rec = parse_line(raw)?;
        let line = match self.pending.remove(rec.stream) {
            Some(mut started) => {
                started.text.extend_from_slice(rec.message);
                started
            }
            None => Line {
                time: rec.time,
                text: rec.message.to_vec(),
            },
        };
        if rec.partial {
            self.pending.insert(rec.stream.to_string(), line);
            None
        } else {
            Some(line)
        }
    }

    /// Lines still waiting for their end (a container that died mid-line).
    pub fn finish(&mut self) -> Vec<Line> {
        let mut rest: Vec<Line> = self.pending.drain().map(|(_, l)| l).collect();
        rest.sort_by_key(|l| l.time);
        rest
    }
}

/// Splits complete file lines off `buf`, leaving an unfinished last line in it.
pub fn take_lines(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let Some(last) = buf.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let rest = buf.split_off(last + 1);
    let done = std::mem::replace(buf, rest);
    done.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The lines of a file's content that the options select (since, then tail), in order.
/// With `finish`, unfinished partial records are included (the kubelet shows whatever
/// was written); without, they stay in `joiner` for what is read next (following).
pub fn select(content: &[u8], opts: &LogOptions, joiner: &mut Joiner, finish: bool) -> Vec<Line> {
    let mut lines: Vec<Line> = content
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| joiner.push(l))
        .collect();
    if finish {
        lines.extend(joiner.finish());
    }
    if let Some(since) = opts.since {
        lines.retain(|l| l.time >= since);
    }
    if let Some(n) = opts.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    lines
}

/// Counts down limitBytes across everything sent.
pub struct Budget(Option<u64>);

impl Budget {
    pub fn new(limit: Option<u64>) -> Self {
        Self(limit)
    }

    /// Cuts `bytes` to what is left; `None` once nothing is.
    pub fn take(&mut self, mut bytes: Vec<u8>) -> Option<Vec<u8>> {
        match &mut self.0 {
            None => Some(bytes),
            Some(0) => None,
            Some(left) => {
                if bytes.len() as u64 > *left {
                    bytes.truncate(*left as usize);
                }
                *left -= bytes.len() as u64;
                Some(bytes)
            }
        }
    }

    pub fn exhausted(&self) -> bool {
        self.0 == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &[u8] = b"2024-01-01T00:00:01.5Z stdout F one\n\
2024-01-01T00:00:02Z stderr F two\n\
2024-01-01T00:00:03.000000001Z stdout P thr\n\
2024-01-01T00:00:03.2Z stderr F four\n\
2024-01-01T00:00:03.5Z stdout F ee\n\
not a log line\n\
2024-01-01T00:00:04Z stdout F \n";

    fn all(content: &[u8], opts: &LogOptions) -> Vec<Line> {
        select(content, opts, &mut Joiner::default(), true)
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.text).into_owned())
            .collect()
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn partial_lines_join_per_stream_and_junk_is_skipped() {
        let all = all(FILE, &LogOptions::default());
        assert_eq!(texts(&all), ["one", "two", "four", "three", ""]);
        // A joined line keeps its first record's time.
        assert_eq!(
            all[3].time,
            "2024-01-01T00:00:03.000000001Z".parse().unwrap()
        );
    }

    #[test]
    fn tail_counts_whole_lines_from_the_end() {
        let opts = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(texts(&all(FILE, &opts)), ["three", ""]);
        let none = LogOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert!(all(FILE, &none).is_empty());
    }

    #[test]
    fn since_skips_older_lines_before_tail_applies() {
        let opts = LogOptions {
            since: Some("2024-01-01T00:00:02Z".parse().unwrap()),
            tail_lines: Some(10),
            ..Default::default()
        };
        assert_eq!(texts(&all(FILE, &opts)), ["two", "four", "three", ""]);
    }

    #[test]
    fn timestamps_are_fixed_width_utc() {
        let line = &all(FILE, &LogOptions::default())[0];
        assert_eq!(
            String::from_utf8(line.render(true)).unwrap(),
            "2024-01-01T00:00:01.500000000Z one\n"
        );
        assert_eq!(line.render(false), b"one\n");
    }

    #[test]
    fn an_unfinished_partial_line_is_still_shown() {
        let file = b"2024-01-01T00:00:01Z stdout P no newline yet";
        assert_eq!(
            texts(&all(file, &LogOptions::default())),
            ["no newline yet"]
        );
    }

    #[test]
    fn take_lines_keeps_the_unfinished_tail() {
        let mut buf = b"a\nb\nc".to_vec();
        assert_eq!(take_lines(&mut buf), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(buf, b"c");
        assert!(take_lines(&mut buf).is_empty());
        buf.extend_from_slice(b"d\n");
        assert_eq!(take_lines(&mut buf), [b"cd".to_vec()]);
        assert!(buf.is_empty());
    }

    #[test]
    fn budget_cuts_at_limit_bytes() {
        let mut b = Budget::new(Some(5));
        assert_eq!(b.take(b"abc".to_vec()), Some(b"abc".to_vec()));
        assert_eq!(b.take(b"defg".to_vec()), Some(b"de".to_vec()));
        assert!(b.exhausted());
        assert_eq!(b.take(b"x".to_vec()), None);
        assert_eq!(Budget::new(None).take(b"x".to_vec()), Some(b"x".to_vec()));
    }

    #[test]
    fn options_from_the_query() {
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        let o = LogOptions::from_query(
            &query(&[
                ("follow", "true"),
                ("tailLines", "3"),
                ("sinceSeconds", "30"),
                ("timestamps", "true"),
                ("limitBytes", "10"),
                ("previous", "false"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            o,
            LogOptions {
                follow: true,
                previous: false,
                tail_lines: Some(3),
                since: Some("2024-01-01T00:00:30Z".parse().unwrap()),
                timestamps: true,
                limit_bytes: Some(10),
            }
        );
        let t = LogOptions::from_query(&query(&[("sinceTime", "2024-01-01T00:00:10Z")]), now);
        assert_eq!(
            t.unwrap().since,
            Some("2024-01-01T00:00:10Z".parse().unwrap())
        );
        for bad in [
            ("tailLines", "-1"),
            ("tailLines", "x"),
            ("limitBytes", "0"),
            ("sinceSeconds", "0"),
            ("sinceTime", "yesterday"),
            ("follow", "maybe"),
        ] {
            assert!(
                LogOptions::from_query(&query(&[bad]), now).is_err(),
                "{bad:?}"
            );
        }
        assert!(LogOptions::from_query(
            &query(&[("sinceSeconds", "1"), ("sinceTime", "2024-01-01T00:00:10Z")]),
            now
        )
        .is_err());
    }
}

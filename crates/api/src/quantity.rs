//! Resource quantities (`100m`, `1Gi`, `1e3`, `1.5`) as upstream's `resource.Quantity`
//! reads and prints them: parsed exactly into nano-units, compared by value, and printed
//! in upstream's canonical form (`1.5Gi` → `1536Mi`, `1000m` → `1`).
//!
//! What it is not: arbitrary precision. Values are held as an `i128` count of nano-units,
//! so anything finer than `1n` is rounded away from zero (as upstream rounds up) and
//! anything beyond about 10^29 is refused as too large.
//!
//! ```
//! use skiff_api::quantity::Quantity;
//! let cpu: Quantity = "250m".parse().unwrap();
//! assert_eq!(cpu.milli_value(), 250);
//! let mem: Quantity = "1.5Gi".parse().unwrap();
//! assert_eq!(mem.value(), 1536 * 1024 * 1024);
//! assert_eq!(mem.to_string(), "1536Mi");
//! assert!(cpu < "1".parse::<Quantity>().unwrap());
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Upstream's message for a string that is not a quantity.
pub const FORMAT_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const NANO: i128 = 1_000_000_000;

/// How a quantity prints: the family of its suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `k`, `M`, `m`, ... or no suffix.
    DecimalSI,
    /// `Ki`, `Mi`, `Gi`, ...
    BinarySI,
    /// `e3`, `E6`, ...
    DecimalExponent,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{FORMAT_MSG}")]
    Format,
    #[error("quantity is too large")]
    TooLarge,
}

/// A parsed quantity. Equality and order are by value, whatever the suffix.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// Integer division rounding away from zero (upstream rounds quantities up).
fn div_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if (n < 0) != (d < 0) {
        q - 1
    } else {
        q + 1
    }
}

/// `(numerator, denominator)` multiplier of a suffix, or None if it is not one.
fn suffix_multiplier(suffix: &str) -> Option<(i128, i128, Format)> {
    let binary = |k: u32| Some((1i128 << (10 * k), 1, Format::BinarySI));
    let decimal = |exp: i32| {
        if exp >= 0 {
            Some((10i128.pow(exp as u32), 1, Format::DecimalSI))
        } else {
            Some((1, 10i128.pow((-exp) as u32), Format::DecimalSI))
        }
    };
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        s if s.starts_with(['e', 'E']) => {
            let digits = &s[1..];
            let body = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let exp: i64 = digits.parse().ok()?;
            // Past these bounds the value is out of range or rounds to 1n anyway.
            let exp = exp.clamp(-40, 40) as i32;
            if exp > 30 {
                return Some((i128::MAX, 1, Format::DecimalExponent));
            }
            let (n, d, _) = decimal(exp)?;
            Some((n, d, Format::DecimalExponent))
        }
        _ => None,
    }
}

impl Quantity {
    /// A quantity of `n` whole units (bytes, cores, objects).
    pub fn from_value(n: i64) -> Self {
        Self {
            nanos: n as i128 * NANO,
            format: Format::DecimalSI,
        }
    }

    /// A quantity of `n` thousandths (`250m`).
    pub fn from_milli(n: i64) -> Self {
        Self {
            nanos: n as i128 * 1_000_000,
            format: Format::DecimalSI,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The exact value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in thousandths, rounded up (upstream's `MilliValue`): CPU in millicores.
    pub fn milli_value(&self) -> i128 {
        div_away(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded up (upstream's `Value`): memory in bytes.
    pub fn value(&self) -> i128 {
        div_away(self.nanos, NANO)
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Sum of two quantities, keeping this one's format; None on overflow.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_add(other.nanos)?,
            format: self.format,
        })
    }

    /// Difference of two quantities, keeping this one's format; None on overflow.
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_sub(other.nanos)?,
            format: self.format,
        })
    }

    /// The largest power-of-1000 exponent (in -9..=18) leaving an integer mantissa.
    fn decimal_parts(&self) -> (i128, i32) {
        let mut mantissa = self.nanos;
        let mut exp = -9;
        while exp < 18 && mantissa != 0 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exp += 3;
        }
        if mantissa == 0 {
            exp = 0;
        }
        (mantissa, exp)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, suffix) = rest.split_at(number_len);
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
            return Err(QuantityError::Format);
        }
        let (num, den, format) = suffix_multiplier(suffix).ok_or(QuantityError::Format)?;
        if num == i128::MAX {
            return Err(QuantityError::TooLarge);
        }
        // Leading zeros carry no value; keep the mantissa small enough for i128.
        let digits = format!("{}{frac}", whole.trim_start_matches('0'));
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return Err(QuantityError::TooLarge);
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError::Format)?
        };
        let scale = 10i128
            .checked_pow(frac.len() as u32)
            .ok_or(QuantityError::TooLarge)?;
        let numerator = mantissa
            .checked_mul(num)
            .and_then(|v| v.checked_mul(NANO))
            .ok_or(QuantityError::TooLarge)?;
        let denominator = scale.checked_mul(den).ok_or(QuantityError::TooLarge)?;
        let mut nanos = div_away(numerator, denominator);
        if negative {
            nanos = -nanos;
        }
        Ok(Quantity { nanos, format })
    }
}

impl fmt::Display for Quantity {
    /// Upstream's canonical form: the largest suffix of the quantity's family that leaves
    /// an integer, with binary quantities below 1Ki or with a fraction shown as decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.format == Format::BinarySI
            && self.nanos % NANO == 0
            && self.nanos.abs() >= 1024 * NANO
        {
            let mut v = self.nanos / NANO;
            let mut k = 0;
            while k < 6 && v % 1024 == 0 {
                v /= 1024;
                k += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
            return write!(f, "{v}{suffix}");
        }
        let (mantissa, exp) = self.decimal_parts();
        if self.format == Format::DecimalExponent {
            return match exp {
                0 => write!(f, "{mantissa}"),
                e => write!(f, "{mantissa}e{e}"),
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{mantissa}{suffix}")
    }
}

/// Parses `s`, for validation: the error text is upstream's.
pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_suffixes_into_exact_values() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("1", NANO),
            ("100m", 100_000_000),
            ("1.5", 1_500_000_000),
            (".5", 500_000_000),
            ("5.", 5 * NANO),
            ("+2", 2 * NANO),
            ("-3m", -3_000_000),
            ("1n", 1),
            ("1u", 1_000),
            ("1k", 1_000 * NANO),
            ("1M", 1_000_000 * NANO),
            ("1G", 1_000_000_000 * NANO),
            ("1E", 10i128.pow(18) * NANO),
            ("1Ki", 1024 * NANO),
            ("1Mi", 1024 * 1024 * NANO),
            ("1.5Gi", 1536 * 1024 * 1024 * NANO),
            ("1Ei", (1i128 << 60) * NANO),
            ("1e3", 1_000 * NANO),
            ("1E3", 1_000 * NANO),
            ("1e-3", 1_000_000),
            ("1.5e+2", 150 * NANO),
            ("007", 7 * NANO),
        ];
        for (s, nanos) in cases {
            assert_eq!(q(s).nanos(), *nanos, "{s}");
        }
    }

    #[test]
    fn refuses_what_upstream_refuses() {
        for bad in [
            "", "m", "1.2.3", "1mi", "1KiB", "abc", "1 Gi", " 1", "1e", "1e+", "1Gi3", "--1", "1Z",
            ".",
        ] {
            assert_eq!(parse(bad), Err(QuantityError::Format), "{bad:?}");
        }
        assert_eq!(parse("1e100"), Err(QuantityError::TooLarge));
        assert_eq!(
            QuantityError::Format.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn finer_than_nano_rounds_away_from_zero() {
        assert_eq!(q("0.1n").nanos(), 1);
        assert_eq!(q("-0.1n").nanos(), -1);
        assert_eq!(q("1e-20").nanos(), 1);
    }

    #[test]
    fn milli_and_whole_values_round_up() {
        assert_eq!(q("250m").milli_value(), 250);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("1.5n").milli_value(), 1);
        assert_eq!(q("100m").value(), 1);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1G").value(), 1_000_000_000);
    }

    #[test]
    fn compares_by_value_across_suffixes() {
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("999m") < q("1"));
        assert!(q("-1") < q("0"));
        assert_eq!(q("1").checked_add(&q("500m")), Some(q("1.5")));
        assert_eq!(q("1Gi").checked_sub(&q("512Mi")), Some(q("512Mi")));
    }

    #[test]
    fn prints_the_canonical_form() {
        let cases = [
            ("1", "1"),
            ("1000m", "1"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("100m", "100m"),
            ("1500000", "1500k"),
            ("1k", "1k"),
            ("0", "0"),
            ("0Gi", "0"),
            ("1.5Gi", "1536Mi"),
            ("1024Mi", "1Gi"),
            ("1Gi", "1Gi"),
            ("0.5Ki", "512"),
            ("1.1Ki", "1126400m"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("-2Gi", "-2Gi"),
            ("-1.5", "-1500m"),
            ("1000E", "1000E"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }
}

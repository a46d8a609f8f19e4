//! Durations and byte sizes as compose-go reads and prints them.
//!
//! Durations are Go's `time.ParseDuration` grammar plus `d` and `w` (compose-go parses them with
//! `str2duration`), held as nanoseconds in an `i64`, and printed as Go's `Duration.String()`
//! does (`90s` is `1m30s`, `1h` is `1h0m0s`). Byte sizes are a plain integer (`-1` allowed) or
//! docker's `RAMInBytes` grammar (binary units, `b`/`ib` optional, case-insensitive), printed
//! as the decimal integer. `config` prints both in these canonical forms.

const NS: [(&str, i64); 10] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
];

/// Parses a duration like `1m30s`, `1.5h`, `500ms`, `2d` into nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("invalid duration {text:?}");
    let (neg, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: i64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_end = b
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(b.len());
        let mut v: i64 = 0;
        for &c in &b[..int_end] {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(c - b'0')))
                .ok_or_else(invalid)?;
        }
        s = &s[int_end..];
        // The fraction: digits after the point, accumulated until they would overflow.
        let (mut f, mut scale, mut post) = (0i64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let end = rest
                .bytes()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let mut overflow = false;
            for c in rest[..end].bytes() {
                if overflow {
                    continue;
                }
                match f
                    .checked_mul(10)
                    .and_then(|x| x.checked_add(i64::from(c - b'0')))
                {
                    Some(y) => {
                        f = y;
                        scale *= 10.0;
                    }
                    None => overflow = true,
                }
            }
            post = end > 0;
            s = &rest[end..];
        }
        if int_end == 0 && !post {
            return Err(invalid());
        }
        let unit_end = s
            .bytes()
            .position(|c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_end == 0 {
            return Err(format!("missing unit in duration {text:?}"));
        }
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let Some(&(_, mult)) = NS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "unknown unit {unit:?} in duration {text:?} (use ns, us, ms, s, m, h, d or w)"
            ));
        };
        let mut part = v.checked_mul(mult).ok_or_else(invalid)?;
        if f > 0 {
            // As Go: the fraction through a float, exact to the nanosecond for hours.
            part = part
                .checked_add((f as f64 * (mult as f64 / scale)) as i64)
                .ok_or_else(invalid)?;
        }
        total = total.checked_add(part).ok_or_else(invalid)?;
    }
    Ok(if neg { -total } else { total })
}

/// Formats nanoseconds as Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn format_duration(ns: i64) -> String {
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if ns < 0 {
        out.push('-');
    }
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        push_fraction(&mut out, u, prec);
        out.push_str(unit);
        return out;
    }
    let secs = u / 1_000_000_000;
    let (h, m) = (secs / 3600, secs / 60 % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    push_fraction(&mut out, secs % 60 * 1_000_000_000 + u % 1_000_000_000, 9);
    out.push('s');
    out
}

/// `v / 10^prec` with its fraction, trailing zeros (and a bare point) left out.
fn push_fraction(out: &mut String, v: u64, prec: usize) {
    let p = 10u64.pow(prec as u32);
    out.push_str(&(v / p).to_string());
    let f = v % p;
    if f != 0 {
        let digits = format!("{f:0prec$}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// Parses a byte size: an integer (`-1` is kept, it means "unlimited" for swap), or a number
/// with a binary unit, `512m`, `1.5GiB`, `100 kb`.
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    if let Ok(n) = text.parse::<i64>()
        && !text.starts_with('+')
    {
        return Ok(n);
    }
    let invalid = || format!("invalid size {text:?}");
    let Some(sep) = text.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(invalid());
    };
    let (num, sfx) = if text.as_bytes()[sep] == b' ' {
        (&text[..sep], &text[sep + 1..])
    } else {
        (&text[..=sep], &text[sep + 1..])
    };
    let size = parse_go_float(num).ok_or_else(invalid)?;
    if size < 0.0 {
        return Err(invalid());
    }
    let sfx = sfx.to_ascii_lowercase();
    let bad = || format!("invalid size {text:?}: unknown unit {sfx:?} (use b, k, m, g, t or p)");
    let mult: f64 = match sfx.as_bytes() {
        [] | [b'b'] => 1.0,
        [u] | [u, b'b'] | [u, b'i', b'b'] => match u {
            b'k' => 1024f64,
            b'm' => 1024f64.powi(2),
            b'g' => 1024f64.powi(3),
            b't' => 1024f64.powi(4),
            b'p' => 1024f64.powi(5),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    let bytes = size * mult;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes as i64)
}

/// A decimal float as Go's `strconv.ParseFloat` reads the forms a size uses (digits, a point,
/// an exponent, a sign); Rust's extra forms (`inf`, `nan`) are refused.
fn parse_go_float(s: &str) -> Option<f64> {
    let digits = s.trim_start_matches(['+', '-']);
    if !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A duration in canonical form, or why it is not one.
pub fn canonical_duration(text: &str) -> Result<String, String> {
    parse_duration(text.trim()).map(format_duration)
}

/// A byte size in canonical form (the decimal integer), or why it is not one.
pub fn canonical_bytes(text: &str) -> Result<String, String> {
    parse_bytes(text.trim()).map(|n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        for (input, want) in [
            ("90s", "1m30s"),
            ("1m30s", "1m30s"),
            ("1h", "1h0m0s"),
            ("0", "0s"),
            ("0s", "0s"),
            ("1.5s", "1.5s"),
            ("500ms", "500ms"),
            ("1500us", "1.5ms"),
            ("1500µs", "1.5ms"),
            ("2μs", "2µs"),
            ("7ns", "7ns"),
            ("1d", "24h0m0s"),
            ("1w2d", "216h0m0s"),
            ("1.5h", "1h30m0s"),
            ("-1m", "-1m0s"),
            ("+10s", "10s"),
            ("3h25m45.05s", "3h25m45.05s"),
            (".5s", "500ms"),
            ("1.s", "1s"),
            ("10s100ms", "10.1s"),
        ] {
            assert_eq!(
                canonical_duration(input).as_deref(),
                Ok(want),
                "duration {input:?}"
            );
        }
    }

    #[test]
    fn bad_durations_are_errors() {
        for bad in [
            "",
            "30",
            "1x",
            "s",
            ".s",
            "1h-1m",
            "abc",
            "-",
            "9999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(
            parse_duration("5y")
                .unwrap_err()
                .contains("unknown unit \"y\"")
        );
    }

    #[test]
    fn sizes_are_integers() {
        for (input, want) in [
            ("1024", 1024),
            ("-1", -1),
            ("512m", 512 << 20),
            ("512M", 512 << 20),
            ("1g", 1 << 30),
            ("1GB", 1 << 30),
            ("1GiB", 1 << 30),
            ("1.5k", 1536),
            ("100 kb", 100 << 10),
            ("10b", 10),
            ("64", 64),
            ("2t", 2 << 40),
        ] {
            assert_eq!(parse_bytes(input), Ok(want), "size {input:?}");
        }
        for bad in ["", "m", "1x", "1kib2", "1mbb", "-5m", "inf", "nan", "1e400"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }
}

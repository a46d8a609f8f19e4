//! The `.env` grammar of docker compose (compose-go's fork of godotenv).
//!
//! `KEY=VALUE` or `KEY: VALUE`, optional `export `, `#` comments (inline only after a space on
//! unquoted values), `'literal'`, `"escapes and ${interpolation}"` (multi-line allowed), and a
//! bare `KEY` line, which copies `KEY` from the lookup environment when it is set there.
//! Values are interpolated with the variables read so far; the lookup environment wins over them.
use super::interpolate::{Env, substitute};

/// A `.env` syntax error; the message names the line, as compose-go's does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DotenvError {
    pub message: String,
}

fn err(message: String) -> DotenvError {
    DotenvError { message }
}

/// Space that is not a line break.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

struct Parser {
    line: usize,
}

/// Parses `.env` text. `lookup` is the environment that bare keys copy from and that wins over
/// the file's own variables during interpolation.
pub fn parse(src: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Env, DotenvError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut out = Env::new();
    let mut p = Parser { line: 1 };
    let mut rest = src;
    loop {
        rest = p.statement_start(rest);
        if rest.is_empty() {
            break;
        }
        let (key, left, inherited) = p.key(rest)?;
        if key.contains(' ') {
            return Err(err(format!("line {}: key cannot contain a space", p.line)));
        }
        if inherited {
            if let Some(v) = lookup(&key) {
                out.insert(key, v);
            }
            rest = left;
            continue;
        }
        let (value, left) = p.value(left, &out, lookup)?;
        out.insert(key, value);
        rest = left;
    }
    Ok(out)
}

/// Like [`parse`], but drops keys that start with a digit, as compose-go's `Read` does.
pub fn read(src: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Env, DotenvError> {
    let mut env = parse(src, lookup)?;
    env.retain(|k, _| !k.starts_with(|c: char| c.is_ascii_digit()));
    Ok(env)
}

impl Parser {
    /// Skips blank space and comment lines, counting line breaks.
    fn statement_start<'a>(&mut self, mut src: &'a str) -> &'a str {
        loop {
            let Some(pos) = src.find(|c: char| {
                if c == '\n' {
                    self.line += 1;
                }
                !c.is_whitespace()
            }) else {
                return "";
            };
            src = &src[pos..];
            if !src.starts_with('#') {
                return src;
            }
            match src.find('\n') {
                Some(nl) => src = &src[nl..],
                None => return "",
            }
        }
    }

    /// Reads the key; returns it, the text after the separator, and whether the line was a
    /// bare `KEY` (inherited from the environment).
    fn key<'a>(&mut self, mut src: &'a str) -> Result<(String, &'a str, bool), DotenvError> {
        if let Some(after) = src.strip_prefix("export")
            && after.starts_with(char::is_whitespace)
        {
            src = after.trim_start_matches(is_space);
        }
        let mut found = None;
        for (i, c) in src.char_indices() {
            if is_space(c) {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    found = Some((i, c));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphanumeric() => {}
                c => {
                    return Err(err(format!(
                        "line {}: unexpected character {:?} in variable name {:?}",
                        self.line,
                        c.to_string(),
                        src.split('\n').next().unwrap_or("")
                    )));
                }
            }
        }
        // A bare key at the end of the file counts as inherited, like one followed by `\n`.
        let (end, sep) = found.unwrap_or((src.len(), '\n'));
        let key = src[..end].trim_end();
        let inherited = sep == '\n';
        if inherited && !key.contains(' ') {
            self.line += 1;
        }
        let after = src.get(end + sep.len_utf8()..).unwrap_or("");
        Ok((
            key.to_string(),
            after.trim_start_matches(is_space),
            inherited,
        ))
    }

    fn value<'a>(
        &mut self,
        src: &'a str,
        vars: &Env,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, &'a str), DotenvError> {
        let expand = |v: &str| -> Result<String, DotenvError> {
            let look = |k: &str| lookup(k).or_else(|| vars.get(k).cloned());
            substitute(v, &look, &mut Vec::new()).map_err(|e| err(e.to_string()))
        };
        let quote = match src.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                let (value, rest) = src.split_once('\n').unwrap_or((src, ""));
                self.line += 1;
                let value = value.split(" #").next().unwrap_or("").trim_end();
                return Ok((expand(value)?, rest));
            }
        };
        let mut chars = String::new();
        let mut escaped = false;
        for (i, c) in src.char_indices().skip(1) {
            if c == '\n' {
                self.line += 1;
            }
            if c != quote {
                if !escaped && c == '\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push('\\');
                }
                chars.push(c);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(c);
                continue;
            }
            let value = if quote == '"' {
                expand(&unescape(&chars))?
            } else {
                chars
            };
            return Ok((value, &src[i + 1..]));
        }
        let first_line = src.split('\n').next().unwrap_or("");
        Err(err(format!(
            "line {}: unterminated quoted value {first_line}",
            self.line
        )))
    }
}

/// Escapes inside double quotes: `\a \b \f \n \r \t \v \" \\`, `\0NNN` octal, and `\$`, which
/// stays a literal `$` through interpolation. Anything else is kept as written.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&(_, n)) = it.peek() else {
            out.push('\\');
            continue;
        };
        let simple = match n {
            'a' => Some("\u{7}"),
            'b' => Some("\u{8}"),
            'f' => Some("\u{c}"),
            'n' => Some("\n"),
            'r' => Some("\r"),
            't' => Some("\t"),
            'v' => Some("\u{b}"),
            '"' => Some("\""),
            '\\' => Some("\\"),
            '$' => Some("$$"),
            _ => None,
        };
        if let Some(rep) = simple {
            out.push_str(rep);
            it.next();
            continue;
        }
        if n == '0' {
            // `\0` then up to three digits; exactly three octal digits make a character.
            let digits: String = s[i + 2..]
                .chars()
                .take(3)
                .take_while(char::is_ascii_digit)
                .collect();
            let code = (digits.len() == 3)
                .then(|| u32::from_str_radix(&digits, 8).ok())
                .flatten()
                .filter(|c| *c <= 0o377)
                .and_then(char::from_u32);
            match code {
                Some(ch) => out.push(ch),
                None => {
                    out.push_str("\\0");
                    out.push_str(&digits);
                }
            }
            it.next();
            for _ in 0..digits.len() {
                it.next();
            }
            continue;
        }
        out.push('\\');
    }
    out
}

/// Reads a `.env` file; a missing file is an empty environment.
pub fn read_file(
    path: &std::path::Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Env>, std::io::Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => parse(&t, lookup)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.message)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Env {
        parse(s, &|_| None).unwrap()
    }

    #[test]
    fn basics() {
        assert_eq!(p("A=1 # c\nexport B='x y'\nC=\"l1\\nl2\"")["C"], "l1\nl2");
        assert_eq!(p("A=1 # c")["A"], "1");
        assert_eq!(p("A=1#c")["A"], "1#c");
        assert_eq!(p("A=1\nB=${A}2")["B"], "12");
        assert!(parse("A B=1", &|_| None).is_err());
        assert!(parse("A=\"x", &|_| None).is_err());
    }
}

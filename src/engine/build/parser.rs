//! The Dockerfile parser, following BuildKit's grammar: parser directives at the top, logical
//! lines joined by the escape character (comment and blank lines inside a continuation are
//! dropped), instruction flags, JSON or shell form, and heredocs for RUN, COPY and ADD.
//!
//! It only splits text into instructions; variable expansion happens in the builder, which
//! knows the values of ARG and ENV at each step.

use std::fmt;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    pub escape: char,
    pub syntax: Option<String>,
    pub check: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// One instruction, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// 1-based line of the instruction keyword.
    pub line: usize,
    /// Upper case: `RUN`, `COPY`…
    pub keyword: String,
    /// `--name=value` (or `--name` alone, value `None`), in order.
    pub flags: Vec<(String, Option<String>)>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// The logical line without the keyword and flags, for history and cache keys.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    /// `RUN ["a", "b"]`.
    Json(Vec<String>),
    /// Everything after the flags, trimmed.
    Shell(String),
}

/// `<<EOF` … `EOF`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// Unquoted delimiters have their content expanded.
    pub expand: bool,
}

/// A parse error at `file:line`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Every instruction berth knows.
pub const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

const HEREDOC_KEYWORDS: [&str; 3] = ["ADD", "COPY", "RUN"];

/// Parses `text`, naming `file` in errors.
pub fn parse(text: &str, file: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let err = |line: usize, message: String| ParseError {
        file: file.to_owned(),
        line,
        message,
    };
    let mut df = Dockerfile {
        escape: '\\',
        syntax: None,
        check: None,
        instructions: Vec::new(),
    };
    let mut i = 0;
    let mut seen: Vec<String> = Vec::new();
    // Parser directives: `# key=value` lines at the very top.
    while i < lines.len() {
        let Some((key, value)) = directive(lines[i]) else {
            break;
        };
        i += 1;
        if !["syntax", "escape", "check"].contains(&key.as_str()) {
            continue; // unknown directives are comments
        }
        if seen.contains(&key) {
            return Err(err(
                i,
                format!("only one {key} parser directive can be used"),
            ));
        }
        seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                df.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(err(
                            i,
                            format!("invalid escape token {value:?}: it must be \\ or `"),
                        ));
                    }
                }
            }
            "syntax" => df.syntax = Some(value),
            _ => df.check = Some(value),
        }
    }

    let esc = df.escape;
    while i < lines.len() {
        let first = lines[i];
        if is_comment_or_blank(first) {
            i += 1;
            continue;
        }
        let start = i + 1;
        // Join the logical line.
        let mut logical = String::new();
        loop {
            let line = lines[i];
            i += 1;
            match continued(line, esc) {
                Some(part) => {
                    logical.push_str(part);
                    // Comment and blank lines inside a continuation are skipped.
                    while i < lines.len() && is_comment_or_blank(lines[i]) {
                        i += 1;
                    }
                    if i >= lines.len() {
                        break;
                    }
                }
                None => {
                    logical.push_str(line);
                    break;
                }
            }
        }
        let logical = logical.trim();
        let (word, rest) = split_first_word(logical);
        let keyword = word.to_ascii_uppercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(err(start, format!("unknown instruction: {word}")));
        }
        let (flags, rest) = parse_flags(rest, esc).map_err(|m| err(start, m))?;
        let mut heredocs = Vec::new();
        if HEREDOC_KEYWORDS.contains(&keyword.as_str()) {
            for marker in heredoc_markers(rest, esc) {
                let mut content = String::new();
                loop {
                    let Some(line) = lines.get(i) else {
                        return Err(err(
                            start,
                            format!(
                                "unterminated heredoc {}: no line {}",
                                marker.name, marker.name
                            ),
                        ));
                    };
                    i += 1;
                    let line = if marker.chomp {
                        line.trim_start_matches('\t')
                    } else {
                        line
                    };
                    if line == marker.name {
                        break;
                    }
                    content.push_str(line);
                    content.push('\n');
                }
                heredocs.push(Heredoc {
                    name: marker.name,
                    content,
                    expand: marker.expand,
                });
            }
        }
        let args = match json_array(rest) {
            Some(v) => Args::Json(v),
            None => Args::Shell(rest.to_owned()),
        };
        if rest.is_empty() && keyword != "HEALTHCHECK" {
            return Err(err(
                start,
                format!("{keyword} requires at least one argument"),
            ));
        }
        df.instructions.push(Instruction {
            line: start,
            keyword,
            flags,
            args,
            heredocs,
            text: rest.to_owned(),
        });
    }
    Ok(df)
}

/// `# key=value` → (lowercase key, value).
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (key, value) = rest.split_once('=')?;
    let key = key.trim();
    if key.is_empty()
        || !key.starts_with(|c: char| c.is_ascii_alphabetic())
        || !key.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.trim().to_owned()))
}

fn is_comment_or_blank(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// The line without its trailing escape character, if it continues on the next line.
fn continued(line: &str, esc: char) -> Option<&str> {
    let t = line.trim_end_matches([' ', '\t', '\r']);
    t.strip_suffix(esc)
}

fn split_first_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(n) => (&s[..n], s[n..].trim_start()),
        None => (s, ""),
    }
}

/// Leading `--name[=value]` words; `--` alone is not a flag.
#[allow(clippy::type_complexity)]
fn parse_flags(mut rest: &str, esc: char) -> Result<(Vec<(String, Option<String>)>, &str), String> {
    let mut flags = Vec::new();
    while rest.starts_with("--") {
        let words = super::shell::split_raw(rest, esc);
        let Some(word) = words.first() else { break };
        if word == "--" {
            break;
        }
        let (_, after) = split_first_word_quoted(rest, word.len());
        let body = &word[2..];
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(unquote(v))),
            None => (body, None),
        };
        if name.is_empty() {
            return Err(format!("invalid flag {word:?}"));
        }
        flags.push((name.to_ascii_lowercase(), value));
        rest = after;
    }
    Ok((flags, rest))
}

fn split_first_word_quoted(s: &str, len: usize) -> (&str, &str) {
    let len = len.min(s.len());
    (&s[..len], s[len..].trim_start())
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_owned();
        }
    }
    v.to_owned()
}

struct Marker {
    name: String,
    chomp: bool,
    expand: bool,
}

/// Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`) among the words of `rest`.
fn heredoc_markers(rest: &str, esc: char) -> Vec<Marker> {
    let mut out = Vec::new();
    for word in super::shell::split_raw(rest, esc) {
        let Some(body) = word.strip_prefix("<<") else {
            continue;
        };
        let (chomp, body) = match body.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, body),
        };
        // `cat <<EOF>out`: the delimiter ends where a redirection starts.
        let body = body.split(['>', '<', '|', ';', '&']).next().unwrap_or("");
        let (name, expand) = match body.chars().next() {
            Some(q @ ('"' | '\'')) if body.len() >= 2 && body.ends_with(q) => {
                (&body[1..body.len() - 1], false)
            }
            _ => (body, true),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            continue;
        }
        out.push(Marker {
            name: name.to_owned(),
            chomp,
            expand,
        });
    }
    out
}

fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(rest).ok()
}

impl Instruction {
    /// The value of flag `name`, if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or("true"))
    }

    /// Every value of a repeatable flag (`--mount`).
    pub fn flag_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// The instruction as one line, for history entries and cache keys.
    pub fn display(&self) -> String {
        let mut s = self.keyword.clone();
        for (n, v) in &self.flags {
            match v {
                Some(v) => s.push_str(&format!(" --{n}={v}")),
                None => s.push_str(&format!(" --{n}")),
            }
        }
        s.push(' ');
        s.push_str(&self.text);
        for h in &self.heredocs {
            s.push('\n');
            s.push_str(&h.content);
            s.push_str(&h.name);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let df = parse(text, "Dockerfile").unwrap();
        assert_eq!(df.instructions.len(), 1, "{text}");
        df.instructions.into_iter().next().unwrap()
    }

    fn shell(s: &str) -> Args {
        Args::Shell(s.into())
    }

    #[test]
    fn instructions_table() {
        let cases: &[(&str, &str, Args)] = &[
            ("FROM busybox", "FROM", shell("busybox")),
            ("from busybox AS b", "FROM", shell("busybox AS b")),
            ("RUN echo hi", "RUN", shell("echo hi")),
            (
                "RUN [\"a\", \"b c\"]",
                "RUN",
                Args::Json(vec!["a".into(), "b c".into()]),
            ),
            ("RUN [\"a\", 1]", "RUN", shell("[\"a\", 1]")),
            ("RUN [not json", "RUN", shell("[not json")),
            ("RUN echo a \\\n  b", "RUN", shell("echo a   b")),
            (
                "RUN echo a \\\n# comment\n\n  b",
                "RUN",
                shell("echo a   b"),
            ),
            ("  \t run   x  ", "RUN", shell("x")),
            ("CMD [\"-c\"]", "CMD", Args::Json(vec!["-c".into()])),
            ("ENV A=1 B=\"2 3\"", "ENV", shell("A=1 B=\"2 3\"")),
            ("HEALTHCHECK NONE", "HEALTHCHECK", shell("NONE")),
            ("maintainer me", "MAINTAINER", shell("me")),
        ];
        for (text, kw, args) in cases {
            let i = one(text);
            assert_eq!(&i.keyword, kw, "{text}");
            assert_eq!(&i.args, args, "{text}");
        }
    }

    #[test]
    fn flags() {
        let i = one("COPY --from=build --chown=1:2 --link a b");
        assert_eq!(i.flag("from"), Some("build"));
        assert_eq!(i.flag("chown"), Some("1:2"));
        assert_eq!(i.flag("link"), Some("true"));
        assert_eq!(i.args, shell("a b"));
        let i = one("RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t ls");
        assert_eq!(
            i.flag_all("mount").collect::<Vec<_>>(),
            ["type=cache,target=/c", "type=tmpfs,target=/t"]
        );
        assert_eq!(i.args, shell("ls"));
        let i = one("RUN --network=\"none\" -- ls");
        assert_eq!(i.flag("network"), Some("none"));
        assert_eq!(i.args, shell("-- ls"));
    }

    #[test]
    fn directives() {
        let df = parse(
            "# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN a `\n b",
            "D",
        )
        .unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(df.instructions[1].args, shell("a  b"));
        assert_eq!(df.instructions[1].line, 4);
        // After an instruction, a directive is a comment.
        let df = parse("FROM x\n# escape=`\nRUN a \\\n b", "D").unwrap();
        assert_eq!(df.escape, '\\');
        assert_eq!(df.instructions[1].args, shell("a  b"));
        // Unknown directives are comments and do not end the section.
        let df = parse("# foo=bar\n# check=skip=all\nFROM x", "D").unwrap();
        assert_eq!(df.check.as_deref(), Some("skip=all"));
        let e = parse("# escape=x\nFROM x", "Dockerfile").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:1: invalid escape token \"x\": it must be \\ or `"
        );
        let e = parse("# syntax=a\n# syntax=b\nFROM x", "D").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn heredocs() {
        let i = one("RUN <<EOF\necho $A\nEOF");
        assert_eq!(
            i.heredocs,
            [Heredoc {
                name: "EOF".into(),
                content: "echo $A\n".into(),
                expand: true
            }]
        );
        let i = one("RUN <<-'EOT' bash\n\t\techo hi\n\tEOT");
        assert_eq!(i.heredocs[0].content, "echo hi\n");
        assert!(!i.heredocs[0].expand);
        let df = parse(
            "COPY <<A <<\"B\" /dest/\nfile a\nA\nfile b\nB\nRUN cat <<X>/out\nx\nX\nFROM y",
            "D",
        )
        .unwrap();
        let names: Vec<&str> = df.instructions[0]
            .heredocs
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, ["A", "B"]);
        assert_eq!(df.instructions[0].heredocs[1].content, "file b\n");
        assert_eq!(df.instructions[1].heredocs[0].content, "x\n");
        assert_eq!(df.instructions[2].line, 9);
        // Not heredocs: quoted, or in other instructions.
        assert!(one("RUN echo '<<EOF'").heredocs.is_empty());
        assert!(one("LABEL a=<<EOF").heredocs.is_empty());
        let e = parse("FROM x\nRUN <<EOF\nno end", "Dockerfile").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn errors_carry_lines() {
        let e = parse("FROM x\n\nFORM y", "sub/Dockerfile").unwrap_err();
        assert_eq!(e.to_string(), "sub/Dockerfile:3: unknown instruction: FORM");
        let e = parse("FROM x\nRUN\n", "Dockerfile").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: RUN requires at least one argument"
        );
        assert!(parse("", "D").unwrap().instructions.is_empty());
        // A trailing continuation at end of file is accepted.
        assert_eq!(one("RUN a \\").args, shell("a"));
    }
}

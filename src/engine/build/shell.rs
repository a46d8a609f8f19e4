//! The shell-word expander of Dockerfile instructions (BuildKit's `shell.Lex`): quotes, the
//! escape character, `$V`, `${V}`, `${V:-x}`, `${V-x}`, `${V:+x}`, `${V+x}`, `${V:?msg}`.
//!
//! It never runs a shell: it is what FROM, COPY, ENV, LABEL, WORKDIR and friends apply to
//! their arguments before use. RUN, CMD and ENTRYPOINT are not expanded (the shell does that).

/// Looks a variable up; `None` when it is not set.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands one word: quotes are removed, variables replaced, whitespace kept.
pub fn expand_word(s: &str, escape: char, env: Lookup) -> Result<String, String> {
    let mut words = Lexer::new(s, escape, env, false).run()?;
    Ok(words.pop().unwrap_or_default())
}

/// Expands and splits on unquoted whitespace (`EXPOSE 80 $PORTS`, COPY sources).
pub fn expand_words(s: &str, escape: char, env: Lookup) -> Result<Vec<String>, String> {
    Lexer::new(s, escape, env, true).run()
}

/// Splits on unquoted whitespace without expanding or removing quotes (ENV/LABEL pairs).
pub fn split_raw(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: Lookup<'a>,
    split: bool,
    words: Vec<String>,
    cur: String,
    /// Whether the current word has content (an empty `""` still makes a word).
    started: bool,
}

impl<'a> Lexer<'a> {
    fn new(s: &str, escape: char, env: Lookup<'a>, split: bool) -> Lexer<'a> {
        Lexer {
            chars: s.chars().collect(),
            pos: 0,
            escape,
            env,
            split,
            words: Vec::new(),
            cur: String::new(),
            started: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    fn push(&mut self, c: char) {
        self.cur.push(c);
        self.started = true;
    }

    fn end_word(&mut self) {
        if self.started {
            self.words.push(std::mem::take(&mut self.cur));
            self.started = false;
        }
    }

    fn run(mut self) -> Result<Vec<String>, String> {
        while let Some(c) = self.next() {
            if c == self.escape {
                match self.next() {
                    Some(n) => self.push(n),
                    None => self.push(c),
                }
            } else if c == '\'' {
                self.started = true;
                self.single_quoted()?;
            } else if c == '"' {
                self.started = true;
                self.double_quoted()?;
            } else if c == '$' {
                let v = self.dollar()?;
                if self.split {
                    // Unquoted expansions are split into words, as a shell would.
                    let mut parts = v.split(char::is_whitespace).peekable();
                    while let Some(p) = parts.next() {
                        self.cur.push_str(p);
                        if !p.is_empty() {
                            self.started = true;
                        }
                        if parts.peek().is_some() {
                            self.end_word();
                        }
                    }
                } else {
                    self.cur.push_str(&v);
                    self.started = true;
                }
            } else if self.split && c.is_whitespace() {
                self.end_word();
            } else {
                self.push(c);
            }
        }
        if !self.split {
            self.started = true;
        }
        self.end_word();
        Ok(self.words)
    }

    fn single_quoted(&mut self) -> Result<(), String> {
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => return Ok(()),
                Some(c) => self.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<(), String> {
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => return Ok(()),
                Some('$') => {
                    let v = self.dollar()?;
                    self.cur.push_str(&v);
                }
                Some(c) if c == self.escape => match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        self.push(n);
                    }
                    _ => self.push(c),
                },
                Some(c) => self.push(c),
            }
        }
    }

    /// After a `$`: the value of the variable reference, or `$` itself.
    fn dollar(&mut self) -> Result<String, String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                Ok((self.env)(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    /// `${…}` after the brace.
    fn braced(&mut self) -> Result<String, String> {
        let name = self.name();
        if name.is_empty() {
            return Err("bad substitution: missing variable name in ${}".into());
        }
        let value = (self.env)(&name);
        let c = self.next();
        if c == Some('}') {
            return Ok(value.unwrap_or_default());
        }
        let colon = c == Some(':');
        let op = if colon { self.next() } else { c };
        let Some(op @ ('-' | '+' | '?')) = op else {
            return Err(format!("unsupported modifier in ${{{name}...}}"));
        };
        let word = self.until_brace(&name)?;
        let word = expand_word(&word, self.escape, self.env)?;
        let set = match &value {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };
        Ok(match op {
            '-' if set => value.unwrap_or_default(),
            '-' => word,
            '+' if set => word,
            '+' => String::new(),
            _ if set => value.unwrap_or_default(),
            _ => {
                return Err(if word.is_empty() {
                    format!("{name}: is not allowed to be unset")
                } else {
                    format!("{name}: {word}")
                });
            }
        })
    }

    /// The raw text up to the matching `}`, nested `${…}` included.
    fn until_brace(&mut self, name: &str) -> Result<String, String> {
        let mut depth = 0;
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(format!("missing '}}' in ${{{name}...")),
                Some('}') if depth == 0 => return Ok(out),
                Some(c) => {
                    if c == '}' {
                        depth -= 1;
                    } else if c == '{' && out.ends_with('$') {
                        depth += 1;
                    } else if c == self.escape
                        && let Some(n) = self.next()
                    {
                        out.push(c);
                        out.push(n);
                        continue;
                    }
                    out.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("a".into()),
            "E" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    #[test]
    fn words_table() {
        let cases: &[(&str, &str)] = &[
            ("$A", "a"),
            ("${A}", "a"),
            ("x${A}y", "xay"),
            ("$U", ""),
            ("${U:-def}", "def"),
            ("${E:-def}", "def"),
            ("${E-def}", ""),
            ("${A:-def}", "a"),
            ("${A:+set}", "set"),
            ("${U:+set}", ""),
            ("${E+set}", "set"),
            ("${U:-${A}b}", "ab"),
            ("'$A'", "$A"),
            ("\"$A b\"", "a b"),
            ("\\$A", "$A"),
            ("\"\\$A\"", "$A"),
            ("a\\ b", "a b"),
            ("$", "$"),
            ("$1", "$1"),
            ("C:\\dir", "C:dir"),
        ];
        for (input, want) in cases {
            assert_eq!(
                expand_word(input, '\\', &env).unwrap(),
                *want,
                "input {input}"
            );
        }
        assert_eq!(expand_word("C:\\dir", '`', &env).unwrap(), "C:\\dir");
        assert_eq!(expand_word("a`$A", '`', &env).unwrap(), "a$A");
    }

    #[test]
    fn splitting() {
        assert_eq!(
            expand_words("a  \"b c\" $SP ''", '\\', &env).unwrap(),
            ["a", "b c", "x", "y", ""]
        );
        assert_eq!(
            split_raw("a=\"b c\" d='e f' g\\ h", '\\'),
            ["a=\"b c\"", "d='e f'", "g\\ h"]
        );
    }

    #[test]
    fn errors() {
        assert!(expand_word("'abc", '\\', &env).is_err());
        assert!(expand_word("\"abc", '\\', &env).is_err());
        assert!(
            expand_word("${U:?must be set}", '\\', &env)
                .unwrap_err()
                .contains("must be set")
        );
        assert!(expand_word("${A", '\\', &env).is_err());
        assert!(expand_word("${}", '\\', &env).is_err());
    }
}

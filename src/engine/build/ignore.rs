//! `.dockerignore` with Docker's pattern rules: one pattern a line, `#` comments, `!` re-includes,
//! patterns are cleaned and anchored at the context root, `*` and `?` stay inside one path
//! component, `**` spans any number of them, and a pattern excluding a directory excludes
//! everything below it. The last matching pattern wins.

/// A parsed ignore file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let comps = clean(pat);
            if comps.is_empty() {
                continue;
            }
            patterns.push((negate, comps));
        }
        Ignore { patterns }
    }

    /// Whether the context-relative path `rel` (`a/b/c`) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let mut out = false;
        for (negate, pat) in &self.patterns {
            // A pattern matches the path or any of its parent directories.
            let hit = (1..=comps.len()).any(|n| match_comps(pat, &comps[..n]));
            if hit {
                out = !negate;
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// `filepath.Clean` of a pattern, anchored at the root, as components.
fn clean(pat: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in pat.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_owned()),
        }
    }
    out
}

fn match_comps(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|skip| match_comps(rest, &path[skip..]))
        }
        Some((p, rest)) => match path.split_first() {
            Some((c, prest)) => fnmatch(p, c) && match_comps(rest, prest),
            None => false,
        },
    }
}

/// Go's `filepath.Match` for one component: `*`, `?`, `[a-z]`, `[^x]`, `\x`.
pub fn fnmatch(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(c) = n.first() else { return false };
                let mut i = 1;
                let negate = matches!(p.get(1), Some('^') | Some('!'));
                if negate {
                    i += 1;
                }
                let mut hit = false;
                let start = i;
                while i < p.len() && (p[i] != ']' || i == start) {
                    let lo = p[i];
                    if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|h| *h != ']') {
                        hit |= lo <= *c && *c <= p[i + 2];
                        i += 3;
                    } else {
                        hit |= lo == *c;
                        i += 1;
                    }
                }
                if i >= p.len() {
                    return false; // unterminated class
                }
                hit != negate && go(&p[i + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

/// Whether a pattern has wildcard characters.
pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_table() {
        let ig = Ignore::parse(
            "# comment\n*.md\n!README.md\nbuild/\n/tmp/**\n**/*.log\n!keep/**/*.log\nsub/*/x\n../up\n",
        );
        let cases = [
            ("a.md", true),
            ("README.md", false),
            ("docs/a.md", false),
            ("build", true),
            ("build/out/bin", true),
            ("tmp/a/b", true),
            ("x.log", true),
            ("deep/er/x.log", true),
            ("keep/a/x.log", false),
            ("sub/a/x", true),
            ("sub/a/b/x", false),
            ("up", true),
            ("src/main.rs", false),
        ];
        for (path, want) in cases {
            assert_eq!(ig.excluded(path), want, "{path}");
        }
    }

    #[test]
    fn fnmatch_table() {
        for (p, n, want) in [
            ("*", "abc", true),
            ("a*c", "abbc", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("\\*", "*", true),
            ("[", "[", false),
        ] {
            assert_eq!(fnmatch(p, n), want, "{p} {n}");
        }
    }
}

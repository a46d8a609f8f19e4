//! Variable interpolation in compose values, as compose-go's `template` package does it:
//! `$V`, `${V}`, `${V:-d}`, `${V-d}`, `${V:?e}`, `${V?e}`, `${V:+r}`, `${V+r}`, nesting in the
//! argument, and `$$` for a literal `$`. A `$` that starts nothing valid is kept as it is;
//! `${` that does not form a valid expression is an error. Arguments are expanded lazily, so
//! `${A:+${A},}` never warns about `A`.
use std::collections::BTreeMap;

pub type Env = BTreeMap<String, String>;

/// Why a template could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    #[error("Invalid template: {template:?}")]
    InvalidTemplate { template: String },
    #[error("required variable {variable} is missing a value{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    MissingRequired { variable: String, reason: String },
}

/// The operators inside `${NAME<op>arg}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `:?`
    RequiredNonEmpty,
    /// `?`
    Required,
    /// `:-`
    DefaultIfEmpty,
    /// `-`
    DefaultIfUnset,
    /// `:+`
    AltIfNonEmpty,
    /// `+`
    AltIfSet,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::RequiredNonEmpty => ":?",
            Operator::Required => "?",
            Operator::DefaultIfEmpty => ":-",
            Operator::DefaultIfUnset => "-",
            Operator::AltIfNonEmpty => ":+",
            Operator::AltIfSet => "+",
        }
    }
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}
fn is_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Splits the content of `${...}` into name, operator and argument; `None` if it is invalid.
pub fn split_braced(body: &str) -> Option<(&str, Option<(Operator, &str)>)> {
    let b = body.as_bytes();
    if b.is_empty() || !is_name_start(b[0]) {
        return None;
    }
    let end = b.iter().position(|c| !is_name(*c)).unwrap_or(b.len());
    let (name, rest) = body.split_at(end);
    if rest.is_empty() {
        return Some((name, None));
    }
    let ops = [
        Operator::RequiredNonEmpty,
        Operator::DefaultIfEmpty,
        Operator::AltIfNonEmpty,
        Operator::Required,
        Operator::DefaultIfUnset,
        Operator::AltIfSet,
    ];
    ops.iter()
        .find_map(|op| rest.strip_prefix(op.as_str()).map(|arg| (*op, arg)))
        .map(|(op, arg)| (name, Some((op, arg))))
}

/// The index of the `}` closing the `{` at `open`.
fn closing_brace(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// One piece of a template.
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
    Braced(&'a str, Option<(Operator, &'a str)>),
}

/// Walks a template, calling `f` on each piece; stops at the first error.
fn walk<'a>(
    template: &'a str,
    f: &mut dyn FnMut(Piece<'a>) -> Result<(), InterpolationError>,
) -> Result<(), InterpolationError> {
    let b = template.as_bytes();
    let invalid = || InterpolationError::InvalidTemplate {
        template: template.to_string(),
    };
    let mut i = 0;
    let mut text_start = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let next = b.get(i + 1).copied();
        match next {
            Some(b'$') => {
                f(Piece::Text(&template[text_start..i + 1]))?;
                i += 2;
                text_start = i;
            }
            Some(b'{') => {
                f(Piece::Text(&template[text_start..i]))?;
                let end = closing_brace(b, i + 1).ok_or_else(invalid)?;
                let (name, op) = split_braced(&template[i + 2..end]).ok_or_else(invalid)?;
                f(Piece::Braced(name, op))?;
                i = end + 1;
                text_start = i;
            }
            Some(c) if is_name_start(c) => {
                f(Piece::Text(&template[text_start..i]))?;
                let start = i + 1;
                let end = b[start..]
                    .iter()
                    .position(|c| !is_name(*c))
                    .map_or(b.len(), |p| start + p);
                f(Piece::Var(&template[start..end]))?;
                i = end;
                text_start = i;
            }
            _ => i += 1,
        }
    }
    f(Piece::Text(&template[text_start..]))
}

/// Expands `template`, looking variables up with `lookup`. `missing` receives each variable that
/// was needed, unset and had no default (one entry per use; the caller deduplicates warnings).
pub fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut Vec<String>,
) -> Result<String, InterpolationError> {
    substitute_at(template, lookup, missing, 0)
}

/// Nesting depth of `${A:-${B:-…}}` beyond which a template is refused (no stack overflow).
const MAX_NESTING: usize = 64;

fn substitute_at(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut Vec<String>,
    depth: usize,
) -> Result<String, InterpolationError> {
    if depth > MAX_NESTING {
        return Err(InterpolationError::InvalidTemplate {
            template: template.to_string(),
        });
    }
    if !template.contains('$') {
        return Ok(template.to_string());
    }
    let mut out = String::with_capacity(template.len());
    walk(template, &mut |piece| {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) | Piece::Braced(name, None) => match lookup(name) {
                Some(v) => out.push_str(&v),
                None => missing.push(name.to_string()),
            },
            Piece::Braced(name, Some((op, arg))) => {
                let value = lookup(name);
                let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
                let set = value.is_some();
                let use_value = match op {
                    Operator::DefaultIfEmpty | Operator::RequiredNonEmpty => non_empty,
                    Operator::DefaultIfUnset | Operator::Required => set,
                    Operator::AltIfNonEmpty => !non_empty,
                    Operator::AltIfSet => !set,
                };
                if use_value {
                    out.push_str(value.as_deref().unwrap_or(""));
                } else {
                    let arg = substitute_at(arg, lookup, missing, depth + 1)?;
                    match op {
                        Operator::Required | Operator::RequiredNonEmpty => {
                            return Err(InterpolationError::MissingRequired {
                                variable: name.to_string(),
                                reason: arg,
                            });
                        }
                        _ => out.push_str(&arg),
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// [`substitute`] with a map.
pub fn interpolate(
    input: &str,
    env: &Env,
    missing: &mut Vec<String>,
) -> Result<String, InterpolationError> {
    substitute(input, &|k| env.get(k).cloned(), missing)
}

/// A variable referenced by a template, as `config --variables` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Variable {
    pub name: String,
    pub default_value: String,
    pub presence_value: String,
    pub required: bool,
}

/// Every variable referenced in `template` (arguments included); invalid templates give none.
pub fn extract_variables(template: &str, out: &mut BTreeMap<String, Variable>) {
    extract_at(template, out, 0);
}

fn extract_at(template: &str, out: &mut BTreeMap<String, Variable>, depth: usize) {
    if depth > MAX_NESTING {
        return;
    }
    let mut found = Vec::new();
    let _ = walk(template, &mut |piece| {
        match piece {
            Piece::Text(_) => {}
            Piece::Var(name) | Piece::Braced(name, None) => found.push(Variable {
                name: name.into(),
                ..Default::default()
            }),
            Piece::Braced(name, Some((op, arg))) => {
                let mut v = Variable {
                    name: name.into(),
                    ..Default::default()
                };
                match op {
                    Operator::DefaultIfEmpty | Operator::DefaultIfUnset => {
                        v.default_value = arg.into()
                    }
                    Operator::AltIfNonEmpty | Operator::AltIfSet => v.presence_value = arg.into(),
                    Operator::Required | Operator::RequiredNonEmpty => v.required = true,
                }
                found.push(v);
                let mut nested = BTreeMap::new();
                extract_at(arg, &mut nested, depth + 1);
                found.extend(nested.into_values());
            }
        }
        Ok(())
    });
    for v in found {
        out.entry(v.name.clone()).or_insert(v);
    }
}

/// Every variable referenced by the string values of a JSON tree.
pub fn extract_value_variables(v: &serde_json::Value, out: &mut BTreeMap<String, Variable>) {
    match v {
        serde_json::Value::String(s) => extract_variables(s, out),
        serde_json::Value::Array(a) => a.iter().for_each(|x| extract_value_variables(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| extract_value_variables(x, out)),
        _ => {}
    }
}

/// Interpolates every string value of a JSON tree in place (keys are left alone). On error,
/// returns the key path of the value and the error.
pub fn interpolate_value(
    v: &mut serde_json::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut Vec<String>,
    path: &str,
) -> Result<(), (String, InterpolationError)> {
    match v {
        serde_json::Value::String(s) => {
            *s = substitute(s, lookup, missing).map_err(|e| (path.to_string(), e))?;
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                interpolate_value(x, lookup, missing, &format!("{path}[{i}]"))?;
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate_value(x, lookup, missing, &p)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str) -> Result<String, InterpolationError> {
        let env: Env = [("A", "a"), ("E", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        interpolate(s, &env, &mut Vec::new())
    }

    #[test]
    fn forms() {
        assert_eq!(run("x$A-${A}").unwrap(), "xa-a");
        assert_eq!(run("${E:-d}|${E-d}|${U-d}").unwrap(), "d||d");
        assert_eq!(run("${A:+r}|${E:+r}|${E+r}").unwrap(), "r||r");
        assert_eq!(run("${U:-${A}}").unwrap(), "a");
        assert_eq!(run("$$A").unwrap(), "$A");
        assert_eq!(run("a $ b $}").unwrap(), "a $ b $}");
        assert!(
            run("${U:?need it}")
                .unwrap_err()
                .to_string()
                .contains("need it")
        );
        assert!(run("${A").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "${U:-".repeat(10_000) + &"}".repeat(10_000);
        assert!(run(&deep).is_err());
        extract_variables(&deep, &mut BTreeMap::new());
    }
}

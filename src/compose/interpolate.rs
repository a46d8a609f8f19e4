//! Variable interpolation in compose values: `$V`, `${V}`, `${V:-d}`, `${V-d}`, `${V:?e}`,
//! `${V?e}`, `${V:+r}`, `${V+r}` (nested defaults allowed) and `$$` for a literal `$`.
use std::collections::BTreeMap;

pub type Env = BTreeMap<String, String>;

/// Replaces variables in `input`. `missing` collects the names that were unset and had no default.
pub fn interpolate(input: &str, env: &Env, missing: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let end = matching_brace(&chars, i + 1).ok_or_else(|| {
                    format!("invalid interpolation format for {input:?}: unclosed ${{")
                })?;
                let body: String = chars[i + 2..end].iter().collect();
                out.push_str(&braced(&body, env, missing, input)?);
                i = end + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                match env.get(&name) {
                    Some(v) => out.push_str(v),
                    None => missing.push(name),
                }
                i = j;
            }
            _ => {
                return Err(format!(
                    "invalid interpolation format for {input:?}: you may need to escape any $ with another $"
                ));
            }
        }
    }
    Ok(out)
}

fn matching_brace(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (k, c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

fn braced(body: &str, env: &Env, missing: &mut Vec<String>, input: &str) -> Result<String, String> {
    let name_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "invalid interpolation format for {input:?}: bad variable name"
        ));
    }
    let op_rest = &body[name_end..];
    let value = env.get(name);
    let (op, arg) = ["::-", ":-", ":?", ":+", "-", "?", "+"]
        .iter()
        .find_map(|op| op_rest.strip_prefix(op).map(|a| (*op, a)))
        .unwrap_or(("", op_rest));
    if op.is_empty() && !arg.is_empty() || op == "::-" {
        return Err(format!("invalid interpolation format for {input:?}"));
    }
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let expand = |s: &str, missing: &mut Vec<String>| interpolate(s, env, missing);
    Ok(match op {
        "" => match value {
            Some(v) => v.clone(),
            None => {
                missing.push(name.to_string());
                String::new()
            }
        },
        ":-" if non_empty => value.cloned().unwrap_or_default(),
        ":-" => expand(arg, missing)?,
        "-" if set => value.cloned().unwrap_or_default(),
        "-" => expand(arg, missing)?,
        ":?" if non_empty => value.cloned().unwrap_or_default(),
        "?" if set => value.cloned().unwrap_or_default(),
        ":?" | "?" => {
            let msg = expand(arg, missing)?;
            return Err(format!(
                "required variable {name} is missing a value: {msg}"
            ));
        }
        ":+" if non_empty => expand(arg, missing)?,
        "+" if set => expand(arg, missing)?,
        _ => String::new(),
    })
}

/// Interpolates every string value of a JSON tree in place (keys are left alone).
pub fn interpolate_value(
    v: &mut serde_json::Value,
    env: &Env,
    missing: &mut Vec<String>,
    path: &str,
) -> Result<(), (String, String)> {
    match v {
        serde_json::Value::String(s) => {
            *s = interpolate(s, env, missing).map_err(|e| (path.to_string(), e))?;
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                interpolate_value(x, env, missing, &format!("{path}[{i}]"))?;
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate_value(x, env, missing, &p)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str) -> Result<String, String> {
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
        assert!(run("${U:?need it}").unwrap_err().contains("need it"));
        assert!(run("${A").is_err());
    }
}

//! `--format` Go templates, as Docker's and docker compose's listings and `inspect` take them:
//! Go's `text/template` (through the `gtmpl` crate: fields, pipelines, `if`/`else`, `range`,
//! `with`, variables, `printf`, `index`, `len`, `eq`…) with Docker's functions (`json`, `join`,
//! `split`, `upper`, `lower`, `title`, `pad`, `truncate`), the `.Label "key"` of its listings,
//! `\t`/`\n` written as escapes, and `table` in front for Docker's header row and columns.
use anyhow::{Result, anyhow};
use gtmpl::{Func, FuncError, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

/// One thing to fill a template with: its fields (a JSON object) and its labels, which
/// `.Label "key"` reads.
pub struct Row {
    pub fields: serde_json::Value,
    pub labels: BTreeMap<String, String>,
}

impl Row {
    pub fn new(fields: serde_json::Value, labels: BTreeMap<String, String>) -> Row {
        Row { fields, labels }
    }
}

thread_local! {
    /// The labels of the row being rendered, for `label` (`.Label "key"`).
    static LABELS: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
    /// While the header row is rendered: `.Label "key"` gives its header.
    static HEADER: RefCell<bool> = const { RefCell::new(false) };
}

/// A parsed `--format`.
pub struct Format {
    template: gtmpl::Template,
    table: bool,
}

impl Format {
    /// Parses a template (`table` first: with a header row, in columns).
    pub fn parse(format: &str) -> Result<Format> {
        let (table, text) = match format.trim_start().strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, format),
        };
        let text = print_as_go(&rewrite_label(
            &text.replace("\\t", "\t").replace("\\n", "\n"),
        ));
        let mut template = gtmpl::Template::default();
        template.add_funcs(FUNCS);
        template
            .parse(text)
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Format { template, table })
    }

    /// Renders one row.
    pub fn render(&self, row: &Row) -> Result<String> {
        LABELS.with(|l| *l.borrow_mut() = row.labels.clone());
        use gtmpl::error::ExecError;
        self.template
            .render(&gtmpl::Context::from(to_value(&row.fields)))
            .map_err(|e| match e {
                // Go's words, without the whole object in Rust's debug form.
                ExecError::NoFiledFor(field, _) => {
                    anyhow!("template: can't evaluate field {field}")
                }
                ExecError::InvalidRange(v) => {
                    anyhow!("template: range can't iterate over {}", go_text(&v))
                }
                e => anyhow!("template: {e}"),
            })
    }

    /// The header row of a `table` template: each field's header (`headers`, else the field
    /// name in capitals) where its value would go.
    fn header(&self, rows: &[Row], headers: &[(&str, &str)]) -> String {
        let mut fields: HashMap<String, Value> = HashMap::new();
        let mut add = |k: &str| {
            let h = headers
                .iter()
                .find(|(f, _)| *f == k)
                .map_or_else(|| k.to_ascii_uppercase(), |(_, h)| h.to_string());
            fields.insert(k.to_string(), Value::from(h));
        };
        for (k, _) in headers {
            add(k);
        }
        if let Some(serde_json::Value::Object(o)) = rows.first().map(|r| &r.fields) {
            for k in o.keys() {
                if !headers.iter().any(|(f, _)| f == k) {
                    add(k);
                }
            }
        }
        HEADER.with(|h| *h.borrow_mut() = true);
        let out = self
            .template
            .render(&gtmpl::Context::from(Value::Map(fields)))
            .unwrap_or_default();
        HEADER.with(|h| *h.borrow_mut() = false);
        out
    }
}

/// Prints `rows` through the template `format`: one line each, or for `table …` a header row
/// and columns laid out as Docker's tabwriter does. `headers` names the columns of the fields
/// whose header is not just their name in capitals.
pub fn print(format: &str, rows: &[Row], headers: &[(&str, &str)]) -> Result<()> {
    let f = Format::parse(format)?;
    let mut lines = Vec::new();
    if f.table {
        lines.push(f.header(rows, headers));
    }
    for r in rows {
        lines.push(f.render(r)?);
    }
    if f.table {
        let cells: Vec<Vec<String>> = lines
            .iter()
            .flat_map(|l| l.split('\n'))
            .map(|l| l.split('\t').map(String::from).collect())
            .collect();
        print_table(&cells);
    } else {
        for l in lines {
            super::output::data(&l);
        }
    }
    Ok(())
}

/// `inspect --format`: each object through the template, one line each (Docker's). `false`
/// when no template was given (or `json`), and the caller prints the JSON array.
pub fn print_inspect(format: Option<&str>, objects: &[serde_json::Value]) -> Result<bool> {
    let Some(format) = format.filter(|f| !f.is_empty() && *f != "json") else {
        return Ok(false);
    };
    let f = Format::parse(format)?;
    for o in objects {
        let labels = o
            .get("Labels")
            .or_else(|| o.get("Config").and_then(|c| c.get("Labels")))
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        super::output::data(&f.render(&Row::new(o.clone(), labels))?);
    }
    Ok(true)
}

/// Rows as Docker's tabwriter lays them out: cells split at tabs, columns at least 10 wide
/// with 3 spaces of padding (the last cell of a line is not padded).
pub fn print_table(rows: &[Vec<String>]) {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter(|r| c + 1 < r.len())
                .map(|r| r[c].chars().count() + 3)
                .max()
                .unwrap_or(0)
                .max(10)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 < r.len() {
                line.push_str(&format!("{cell:<w$}", w = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        super::output::data(&line);
    }
}

/// Docker's listings have a method `.Label "key"`; gtmpl calls no method with arguments, so it
/// becomes the function `label "key"`.
fn rewrite_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(".Label ") {
        let before = rest[..i].chars().last();
        let after = rest[i + ".Label ".len()..].trim_start();
        let starts = matches!(before, None | Some(' ' | '{' | '(' | '|' | '\t'));
        if starts && after.starts_with(['"', '`']) {
            out.push_str(&rest[..i]);
            out.push_str("label ");
        } else {
            out.push_str(&rest[..i + ".Label ".len()]);
        }
        rest = &rest[i + ".Label ".len()..];
    }
    out.push_str(rest);
    out
}

/// gtmpl prints a list or a map in Rust's debug form; Go prints `[a b]` and `map[k:v]`. Every
/// action that prints its value gets ` | goprint` appended (not those that control the flow,
/// define variables, or are comments).
fn print_as_go(text: &str) -> String {
    const CONTROL: [&str; 10] = [
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let Some(j) = find_close(&rest[i + 2..]) else {
            // Unclosed: the parser reports it.
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = &rest[i + 2..i + 2 + j];
        let (lead, body) = match inner.strip_prefix('-') {
            Some(b) => ("-", b),
            None => ("", inner),
        };
        let (body, trail) = match body.strip_suffix('-') {
            Some(b) if b.ends_with(char::is_whitespace) => (b, "-"),
            _ => (body, ""),
        };
        let word = body.split_whitespace().next().unwrap_or("");
        let quiet = body.trim().is_empty()
            || CONTROL.contains(&word)
            || body.trim_start().starts_with("/*")
            || body.contains(":=")
            || (word.starts_with('$') && body.contains(" = "));
        let prints = !quiet;
        out.push_str("{{");
        out.push_str(lead);
        if prints {
            out.push_str(body.trim_end());
            out.push_str(" | goprint ");
        } else {
            out.push_str(body);
        }
        out.push_str(trail);
        out.push_str("}}");
        rest = &rest[i + 2 + j + 2..];
    }
    out.push_str(rest);
    out
}

/// Where an action's `}}` is, outside its quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        match (quote, b[i]) {
            (Some(b'"'), b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (None, c @ (b'"' | b'`' | b'\'')) => quote = Some(c),
            (None, b'}') if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A value as Go's `fmt` prints it with `%v`: lists `[a b]`, maps `map[k:v]` in key order.
fn go_text(v: &Value) -> String {
    match v {
        Value::NoValue => "<no value>".into(),
        Value::Nil => "<nil>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_text).collect::<Vec<_>>().join(" ")),
        Value::Object(o) | Value::Map(o) => {
            let sorted: BTreeMap<&String, &Value> = o.iter().collect();
            let items: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{k}:{}", go_text(v)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

fn goprint(args: &[Value]) -> Result<Value, FuncError> {
    exactly("goprint", args, 1)?;
    Ok(match &args[0] {
        Value::String(_) => args[0].clone(),
        other => Value::from(go_text(other)),
    })
}

const FUNCS: &[(&str, Func)] = &[
    ("goprint", goprint),
    ("json", json),
    ("join", join),
    ("split", split),
    ("upper", upper),
    ("lower", lower),
    ("title", title),
    ("pad", pad),
    ("truncate", truncate),
    ("label", label),
];

/// A JSON value as a template value: objects have fields (a missing one is an error, as for
/// Docker's structs), numbers stay numbers.
pub fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        serde_json::Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
        }
    }
}

/// The other way, for `json` (keys sorted).
fn from_value(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => n
            .as_i64()
            .map(serde_json::Value::from)
            .or_else(|| n.as_u64().map(serde_json::Value::from))
            .or_else(|| n.as_f64().map(serde_json::Value::from))
            .unwrap_or(serde_json::Value::Null),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(from_value).collect()),
        Value::Object(o) | Value::Map(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), from_value(v)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
    }
}

fn exactly(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FuncError::ExactlyXArgs(name.into(), n))
    }
}

/// A value as text, as Go prints a string (anything else as gtmpl prints it).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Nil | Value::NoValue => String::new(),
        other => other.to_string(),
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    exactly("json", args, 1)?;
    Ok(Value::from(from_value(&args[0]).to_string()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    exactly("join", args, 2)?;
    let sep = text(&args[1]);
    match &args[0] {
        Value::Array(a) => Ok(Value::from(
            a.iter().map(text).collect::<Vec<_>>().join(&sep),
        )),
        Value::Nil | Value::NoValue => Ok(Value::from("")),
        other => Err(FuncError::Generic(format!("join: {other} is not a list"))),
    }
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    exactly("split", args, 2)?;
    let (s, sep) = (text(&args[0]), text(&args[1]));
    Ok(Value::Array(
        s.split(sep.as_str()).map(Value::from).collect(),
    ))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    exactly("upper", args, 1)?;
    Ok(Value::from(text(&args[0]).to_uppercase()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    exactly("lower", args, 1)?;
    Ok(Value::from(text(&args[0]).to_lowercase()))
}

/// Each word's first letter in capitals.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    exactly("title", args, 1)?;
    let mut out = String::new();
    let mut start = true;
    for c in text(&args[0]).chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    Ok(Value::from(out))
}

fn count(name: &str, v: &Value) -> Result<usize, FuncError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| FuncError::Generic(format!("{name}: {n} is not a count"))),
        other => Err(FuncError::Generic(format!(
            "{name}: {other} is not a count"
        ))),
    }
}

/// `pad S LEFT RIGHT`: spaces around.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    exactly("pad", args, 3)?;
    let (l, r) = (count("pad", &args[1])?, count("pad", &args[2])?);
    Ok(Value::from(format!(
        "{}{}{}",
        " ".repeat(l),
        text(&args[0]),
        " ".repeat(r)
    )))
}

/// `truncate S N`: the first N characters.
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    exactly("truncate", args, 2)?;
    let n = count("truncate", &args[1])?;
    Ok(Value::from(
        text(&args[0]).chars().take(n).collect::<String>(),
    ))
}

/// `.Label "key"` (see [`rewrite_label`]): the label's value, empty when it has none; in the
/// header row, the key's last dotted part in capitals, as Docker's.
fn label(args: &[Value]) -> Result<Value, FuncError> {
    exactly("label", args, 1)?;
    let key = text(&args[0]);
    if HEADER.with(|h| *h.borrow()) {
        let last = key.rsplit('.').next().unwrap_or(&key);
        return Ok(Value::from(last.replace(['-', '_'], " ").to_uppercase()));
    }
    Ok(Value::from(LABELS.with(|l| {
        l.borrow().get(&key).cloned().unwrap_or_default()
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row::new(
            serde_json::json!({"Name": "web", "Ports": ["80/tcp", "443/tcp"], "Size": 3,
                "Labels": "a=1,b=2", "Config": {"Env": ["A=1"], "Labels": {"k": "v"}}}),
            BTreeMap::from([("com.docker.compose.service".into(), "web".into())]),
        )
    }

    fn render(t: &str) -> String {
        Format::parse(t).unwrap().render(&row()).unwrap()
    }

    #[test]
    fn fields_functions_and_control_flow() {
        assert_eq!(render("{{.Name}}\\t{{ .Size }}"), "web\t3");
        assert_eq!(render("{{json .Ports}}"), r#"["80/tcp","443/tcp"]"#);
        assert_eq!(render("{{join .Ports \", \"}}"), "80/tcp, 443/tcp");
        assert_eq!(
            render("{{upper .Name}} {{lower \"AB\"}} {{title \"a b\"}}"),
            "WEB ab A B"
        );
        assert_eq!(render("{{printf \"%-5s|\" .Name}}"), "web  |");
        assert_eq!(
            render("{{range .Ports}}[{{.}}]{{end}}{{if eq .Name \"web\"}} yes{{else}} no{{end}}"),
            "[80/tcp][443/tcp] yes"
        );
        assert_eq!(render("{{.Labels}}"), "a=1,b=2");
        assert_eq!(render("{{.Label \"com.docker.compose.service\"}}"), "web");
        assert_eq!(render("{{.Label \"nope\"}}|"), "|");
        assert_eq!(render("{{index .Config.Labels \"k\"}}"), "v");
        assert_eq!(
            render("{{json .Config}}"),
            r#"{"Env":["A=1"],"Labels":{"k":"v"}}"#
        );
        assert_eq!(
            render("{{pad .Name 1 2}}|{{truncate .Name 2}}"),
            " web  |we"
        );
        assert_eq!(render("{{range split \"a:b\" \":\"}}{{.}} {{end}}"), "a b ");
        assert_eq!(render("{{len .Ports}}"), "2");
        // Printed as Go prints them.
        assert_eq!(
            render("{{.Ports}} {{.Config.Labels}}"),
            "[80/tcp 443/tcp] map[k:v]"
        );
        assert_eq!(
            render("{{- .Name -}} {{/* c */}}{{$x := .Size}}{{$x}}"),
            "web3"
        );
        assert_eq!(render("{{ \"}}\" }}"), "}}");
        let e = Format::parse("{{.Name").err().unwrap().to_string();
        assert!(e.contains("template parsing error"), "{e}");
        let e = Format::parse("{{.Nope}}")
            .unwrap()
            .render(&row())
            .unwrap_err();
        assert!(e.to_string().contains("Nope"), "{e}");
    }

    #[test]
    fn table_headers() {
        let f = Format::parse(
            "table {{.Name}}\\t{{.Size}}\\t{{.Label \"com.docker.compose.service\"}}",
        )
        .unwrap();
        assert!(f.table);
        assert_eq!(
            f.header(&[row()], &[("Name", "NAME X")]),
            "NAME X\tSIZE\tSERVICE"
        );
    }
}

//! YAML → JSON value, with a position index and the compose merge tags.
//!
//! We read the parser's events ourselves instead of deserializing through serde, because the
//! loader needs three things serde throws away: the `line:col` of every key and item (so that
//! errors found later, after interpolation and merging, still point into the file), the
//! `!reset`/`!override` tags, and YAML 1.2 core-schema scalars (`8080:80` and `on` stay strings).
//! Anchors, aliases and `<<` merge keys (single and list) are resolved here; duplicate keys are an
//! error; alias expansion has a budget so that a "billion laughs" file fails instead of eating RAM.
use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::collections::HashMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// The compose merge tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeTag {
    /// `!reset`: drop the inherited value (and this one).
    Reset,
    /// `!override`: replace the inherited value instead of merging into it.
    Override,
}

/// One YAML document as a JSON value, with where each key path came from.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub value: Value,
    /// Key path (`services.web.ports[0]`) → position of the key or sequence item.
    pub positions: HashMap<String, Pos>,
    /// Key path → merge tag written on that node.
    pub tags: HashMap<String, MergeTag>,
}

/// A YAML syntax or structure error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Nodes created through aliases, at most; beyond that the file is rejected.
const ALIAS_BUDGET: usize = 200_000;
/// Nesting depth, at most.
const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone)]
enum Kind {
    Scalar { text: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    pos: Pos,
    tag: Option<String>,
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

fn tag_name(tag: Option<&Tag>) -> Option<String> {
    let t = tag?;
    if t.is_yaml_core_schema() {
        Some(format!("!!{}", t.suffix()))
    } else {
        Some(format!("{}{}", t.handle(), t.suffix()))
    }
}

struct Builder<'a> {
    events: Parser<'a, serde_saphyr::granit_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    budget: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<Option<(Event<'a>, Span)>, YamlError> {
        match self.events.next() {
            None => Ok(None),
            Some(Ok(ev)) => Ok(Some(ev)),
            Some(Err(e)) => Err(YamlError {
                pos: Pos {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                message: e.info().to_string(),
            }),
        }
    }

    fn count(&mut self, node: &Node, at: Pos) -> Result<(), YamlError> {
        fn size(n: &Node) -> usize {
            match &n.kind {
                Kind::Scalar { .. } => 1,
                Kind::Seq(v) => 1 + v.iter().map(size).sum::<usize>(),
                Kind::Map(v) => 1 + v.iter().map(|(k, v)| size(k) + size(v)).sum::<usize>(),
            }
        }
        self.budget = self.budget.saturating_add(size(node));
        if self.budget > ALIAS_BUDGET {
            return Err(YamlError {
                pos: at,
                message: "too many nodes created through aliases (alias bomb?)".into(),
            });
        }
        Ok(())
    }

    /// Builds the node that starts with `ev`.
    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Node, YamlError> {
        let at = pos(&span);
        if depth > MAX_DEPTH {
            return Err(YamlError {
                pos: at,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => (
                Node {
                    kind: Kind::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                    pos: at,
                    tag: tag_name(tag.as_deref()),
                },
                anchor,
            ),
            Event::SequenceStart(_, anchor, tag) => {
                let tag = tag_name(tag.as_deref());
                let mut items = Vec::new();
                loop {
                    let Some((ev, span)) = self.next()? else {
                        return Err(eof(at));
                    };
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    if let Some(n) = self.child(ev, span, depth)? {
                        items.push(n);
                    }
                }
                (
                    Node {
                        kind: Kind::Seq(items),
                        pos: at,
                        tag,
                    },
                    anchor,
                )
            }
            Event::MappingStart(_, anchor, tag) => {
                let tag = tag_name(tag.as_deref());
                let mut entries = Vec::new();
                loop {
                    let Some((ev, span)) = self.next()? else {
                        return Err(eof(at));
                    };
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let Some(k) = self.child(ev, span, depth)? else {
                        continue;
                    };
                    let v = loop {
                        let Some((ev, span)) = self.next()? else {
                            return Err(eof(at));
                        };
                        if let Some(v) = self.child(ev, span, depth)? {
                            break v;
                        }
                    };
                    entries.push((k, v));
                }
                (
                    Node {
                        kind: Kind::Map(entries),
                        pos: at,
                        tag,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let n = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    pos: at,
                    message: "unknown anchor".into(),
                })?;
                self.count(&n, at)?;
                return Ok(n);
            }
            Event::UnresolvedAlias(name) => {
                return Err(YamlError {
                    pos: at,
                    message: format!("unknown anchor {name:?}"),
                });
            }
            other => {
                return Err(YamlError {
                    pos: at,
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    /// Like `node`, but skips comments and anchor metadata (returns `None` for them).
    fn child(
        &mut self,
        ev: Event<'a>,
        span: Span,
        depth: usize,
    ) -> Result<Option<Node>, YamlError> {
        match ev {
            Event::Comment(..) | Event::Anchor(..) => Ok(None),
            ev => self.node(ev, span, depth + 1).map(Some),
        }
    }
}

fn eof(at: Pos) -> YamlError {
    YamlError {
        pos: at,
        message: "unexpected end of file".into(),
    }
}

/// Parses every document of `text`. An empty file gives one document whose value is `null`.
pub fn parse(text: &str) -> Result<Vec<Document>, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut b = Builder {
        events: Parser::new_from_str(text),
        anchors: HashMap::new(),
        budget: 0,
    };
    let mut docs = Vec::new();
    let mut root: Option<Node> = None;
    while let Some((ev, span)) = b.next()? {
        match ev {
            Event::StreamStart | Event::Comment(..) | Event::Anchor(..) => {}
            Event::StreamEnd => break,
            Event::DocumentStart(..) => {
                root = None;
                b.anchors.clear();
            }
            Event::DocumentEnd => {
                let mut doc = Document::default();
                if let Some(n) = root.take() {
                    doc.value = convert(n, "", &mut doc)?;
                }
                docs.push(doc);
            }
            ev => root = Some(b.node(ev, span, 0)?),
        }
    }
    if docs.is_empty() {
        docs.push(Document::default());
    }
    Ok(docs)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Resolves a scalar by the YAML 1.2 core schema (or its explicit `!!` tag).
fn scalar(text: String, plain: bool, tag: Option<&str>, at: Pos) -> Result<Value, YamlError> {
    let bad = |what: &str| YamlError {
        pos: at,
        message: format!("cannot read {text:?} as {what}"),
    };
    match tag {
        Some("!!str") => return Ok(Value::String(text)),
        Some("!!null") => return Ok(Value::Null),
        Some("!!bool") => {
            return resolve_plain(&text)
                .filter(Value::is_boolean)
                .ok_or(bad("a boolean"));
        }
        Some("!!int") => {
            return resolve_plain(&text)
                .filter(Value::is_i64)
                .ok_or(bad("an integer"));
        }
        Some("!!float") => {
            return resolve_plain(&text)
                .filter(Value::is_number)
                .ok_or(bad("a number"));
        }
        _ => {}
    }
    if !plain {
        return Ok(Value::String(text));
    }
    Ok(resolve_plain(&text).unwrap_or(Value::String(text)))
}

/// The core schema's null, bool, int and float forms; `None` means "a string".
fn resolve_plain(s: &str) -> Option<Value> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            // JSON has no infinities: keep the text.
            return Some(Value::String(s.to_string()));
        }
        _ => {}
    }
    let digits = |t: &str, radix: u32| !t.is_empty() && t.chars().all(|c| c.is_digit(radix));
    let (sign, body) = match s.as_bytes()[0] {
        b'-' => (-1i128, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let int = if let Some(h) = s.strip_prefix("0x").filter(|h| digits(h, 16)) {
        i128::from_str_radix(h, 16).ok()
    } else if let Some(o) = s.strip_prefix("0o").filter(|o| digits(o, 8)) {
        i128::from_str_radix(o, 8).ok()
    } else if digits(body, 10) {
        body.parse::<i128>().ok().map(|v| sign * v)
    } else {
        None
    };
    if let Some(v) = int {
        if let Ok(i) = i64::try_from(v) {
            return Some(Value::Number(i.into()));
        }
        if let Ok(u) = u64::try_from(v) {
            return Some(Value::Number(u.into()));
        }
        return Some(Value::String(s.to_string()));
    }
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", f)) => digits(f, 10),
        Some((i, f)) => digits(i, 10) && (f.is_empty() || digits(f, 10)),
        None => digits(mantissa, 10),
    };
    let exp_ok = exp.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
    if mantissa_ok && exp_ok {
        let f: f64 = s.parse().ok()?;
        return Number::from_f64(f).map(Value::Number);
    }
    None
}

fn key_text(k: &Node) -> Result<String, YamlError> {
    match &k.kind {
        Kind::Scalar { text, plain } => {
            if *plain && matches!(resolve_plain(text), Some(Value::Null)) && !text.is_empty() {
                return Ok("null".into());
            }
            Ok(text.clone())
        }
        _ => Err(YamlError {
            pos: k.pos,
            message: "mapping keys must be strings".into(),
        }),
    }
}

fn record_tag(doc: &mut Document, path: &str, tag: Option<&str>) {
    match tag {
        Some("!reset") => {
            doc.tags.insert(path.to_string(), MergeTag::Reset);
        }
        Some("!override") => {
            doc.tags.insert(path.to_string(), MergeTag::Override);
        }
        _ => {}
    }
}

fn convert(n: Node, path: &str, doc: &mut Document) -> Result<Value, YamlError> {
    record_tag(doc, path, n.tag.as_deref());
    match n.kind {
        Kind::Scalar { text, plain } => scalar(text, plain, n.tag.as_deref(), n.pos),
        Kind::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let p = format!("{path}[{i}]");
                doc.positions.insert(p.clone(), item.pos);
                out.push(convert(item, &p, doc)?);
            }
            Ok(Value::Array(out))
        }
        Kind::Map(entries) => {
            let mut out = Map::new();
            let mut merges = Vec::new();
            for (k, v) in entries {
                if matches!(&k.kind, Kind::Scalar { text, plain: true } if text == "<<") {
                    merges.push(v);
                    continue;
                }
                let key = key_text(&k)?;
                if out.contains_key(&key) {
                    return Err(YamlError {
                        pos: k.pos,
                        message: format!("duplicate key {key:?}"),
                    });
                }
                let p = join(path, &key);
                doc.positions.insert(p.clone(), k.pos);
                let v = convert(v, &p, doc)?;
                out.insert(key, v);
            }
            // `<<` keys never override explicit keys; in a list, earlier maps win.
            for m in merges {
                let sources = match m.kind {
                    Kind::Map(_) => vec![m],
                    Kind::Seq(items) => items,
                    Kind::Scalar { .. } => {
                        return Err(YamlError {
                            pos: m.pos,
                            message: "a merge key (<<) needs a mapping or a list of mappings"
                                .into(),
                        });
                    }
                };
                for src in sources {
                    let Kind::Map(entries) = src.kind else {
                        return Err(YamlError {
                            pos: src.pos,
                            message: "a merge key (<<) needs a mapping or a list of mappings"
                                .into(),
                        });
                    };
                    let src = Node {
                        kind: Kind::Map(entries),
                        pos: src.pos,
                        tag: None,
                    };
                    let Value::Object(merged) = convert(src, path, doc)? else {
                        continue;
                    };
                    for (k, v) in merged {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            Ok(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Document {
        parse(text).unwrap().remove(0)
    }

    #[test]
    fn core_schema_scalars() {
        let d = one("a: 8080:80\nb: on\nc: 010\nd: 0x1F\ne: 1.5\nf: ~\ng: '1'\nh: yes\ni: 1e3\n");
        assert_eq!(
            d.value,
            json!({"a": "8080:80", "b": "on", "c": 10, "d": 31, "e": 1.5, "f": null, "g": "1", "h": "yes", "i": 1000.0})
        );
    }

    #[test]
    fn positions_and_paths() {
        let d = one("services:\n  web:\n    ports:\n      - 80\n      - '443'\n");
        assert_eq!(d.positions["services.web"], Pos { line: 2, col: 3 });
        assert_eq!(
            d.positions["services.web.ports[1]"],
            Pos { line: 5, col: 9 }
        );
    }

    #[test]
    fn merge_keys_and_anchors() {
        let d = one(
            "x-a: &a {image: a, tty: true}\nx-b: &b {image: b, init: true}\ns:\n  one:\n    <<: [*a, *b]\n    tty: false\n  two:\n    <<: *b\n",
        );
        assert_eq!(
            d.value["s"],
            json!({"one": {"image": "a", "tty": false, "init": true}, "two": {"image": "b", "init": true}})
        );
    }

    #[test]
    fn tags_and_duplicates() {
        let d = one("a: !reset []\nb: !override {x: 1}\nc: !!str 1\n");
        assert_eq!(d.tags["a"], MergeTag::Reset);
        assert_eq!(d.tags["b"], MergeTag::Override);
        assert_eq!(d.value["c"], json!("1"));
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(e.message.contains("duplicate"));
    }

    #[test]
    fn empty_and_comment_only() {
        assert_eq!(one("").value, Value::Null);
        assert_eq!(one("# nothing\n").value, Value::Null);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("a{}", i - 1)
            };
            s.push_str(&format!(
                "b{i}: &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(parse(&s).is_err());
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("services:\n  web:\n    image: [busybox\n").unwrap_err();
        assert!(e.pos.line >= 3, "{e:?}");
    }
}

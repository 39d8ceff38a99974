//! Label and field selectors as the Kubernetes API server parses them, and the
//! name formats (label keys and values, DNS names) that selectors and object
//! validation share.
//!
//! Error texts follow Kubernetes word for word: kubectl and other clients show
//! them to users unchanged, and scripts match on them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::{self, Write as _};

use serde_json::{Map, Value};

/// A selector that cannot be parsed or is not supported for a kind. `Display`
/// gives Kubernetes' message, meant for a 400 BadRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(String);

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectorError {}

// ---------------------------------------------------------------------------
// Name formats (k8s.io/apimachinery/pkg/util/validation)

const QUALIFIED_NAME_MAX: usize = 63;
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character";
const QUALIFIED_NAME_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];
const LABEL_VALUE_MAX: usize = 63;
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
     alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_MAX: usize = 63;
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric \
     characters or '-', start with an alphabetic character, and end with an alphanumeric character";

/// Checks a label key (a qualified name: optional DNS subdomain prefix and
/// '/', then a name of at most 63 characters). `Err` joins Kubernetes'
/// messages with "; ", as the selector parser does.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    joined(label_key_errors(key))
}

/// Checks a label value (at most 63 characters, may be empty).
pub fn validate_label_value(value: &str) -> Result<(), String> {
    joined(label_value_errors(value))
}

fn joined(errs: Vec<String>) -> Result<(), String> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// Each way `key` fails to be a qualified name (label key, annotation key).
pub fn label_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) if !name.contains('/') => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                let prefixed = dns1123_subdomain_errors(prefix).into_iter();
                errs.extend(prefixed.map(|m| format!("prefix part {m}")));
            }
            name
        }
        Some(_) => {
            let re = regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                QUALIFIED_NAME_EXAMPLES,
            );
            return vec![format!(
                "a qualified name {re} with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    if !is_qualified_name_part(name) {
        let re = regex_error(
            QUALIFIED_NAME_MSG,
            QUALIFIED_NAME_FMT,
            QUALIFIED_NAME_EXAMPLES,
        );
        errs.push(format!("name part {re}"));
    }
    errs
}

/// Each way `value` fails to be a label value.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errs.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        let examples = &["MyValue", "my_value", "12345"];
        errs.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, examples));
    }
    errs
}

/// Each way `value` fails to be an RFC 1123 label (namespace names,
/// container, volume and port names).
pub fn dns1123_label_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !is_dns1123_label(value) {
        // Length was reported above, so a valid subdomain can only fail on dots.
        errs.push(if is_dns1123_subdomain(value) {
            "must not contain dots".to_owned()
        } else {
            regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            )
        });
    }
    errs
}

/// Each way `value` fails to be an RFC 1123 subdomain (most object names).
pub fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !is_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Each way `value` fails to be an RFC 1035 label (Service names).
pub fn dns1035_label_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX {
        errs.push(max_len_error(DNS1035_LABEL_MAX));
    }
    let lower_alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !shaped(
        value,
        |c| c.is_ascii_lowercase(),
        |c| lower_alnum(c) || c == b'-',
        lower_alnum,
    ) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Kubernetes' "must be no more than N characters".
pub(crate) fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Kubernetes' RegexError, double spaces before "or" included.
pub(crate) fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        let _ = write!(s, "'{example}', ");
    }
    let _ = write!(s, "regex used for validation is '{re}')");
    s
}

/// Non-empty, with the first, middle and last bytes in the given classes.
fn shaped(
    s: &str,
    first: impl Fn(u8) -> bool,
    body: impl Fn(u8) -> bool,
    last: impl Fn(u8) -> bool,
) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => first(f) && last(l) && b.iter().all(|&c| body(c)),
        _ => false,
    }
}

fn is_qualified_name_part(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    shaped(
        s,
        alnum,
        |c| alnum(c) || matches!(c, b'-' | b'_' | b'.'),
        alnum,
    )
}

fn is_dns1123_label(s: &str) -> bool {
    let lower_alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    shaped(s, lower_alnum, |c| lower_alnum(c) || c == b'-', lower_alnum)
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(is_dns1123_label)
}

// ---------------------------------------------------------------------------
// Go formatting shared with validation messages

/// A string as Go's `%q` prints it.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `[]string` as Go's `%#v` prints it; Kubernetes passes empty value lists
/// on as nil slices.
pub(crate) fn go_string_slice<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "[]string(nil)".to_owned();
    }
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s.as_ref())).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Several error messages as Kubernetes' aggregate error prints them:
/// duplicates dropped, one message bare, more in brackets.
pub(crate) fn aggregate(messages: impl IntoIterator<Item = String>) -> String {
    let mut seen = HashSet::new();
    let unique: Vec<String> = messages
        .into_iter()
        .filter(|m| seen.insert(m.clone()))
        .collect();
    match unique.len() {
        1 => unique.join(""),
        _ => format!("[{}]", unique.join(", ")),
    }
}

// ---------------------------------------------------------------------------
// Label selectors

/// Read access to a set of labels, so selectors match whatever map the caller holds.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    /// Kubernetes' NewRequirement: validates and reports errors with its field paths.
    fn new(key: String, op: Op, values: Vec<String>) -> Result<Self, String> {
        let mut errs = Vec::new();
        let key_errs = label_key_errors(&key);
        if !key_errs.is_empty() {
            errs.push(format!(
                "key: Invalid value: {}: {}",
                go_quote(&key),
                key_errs.join("; ")
            ));
        }
        let count_error = |detail: &str| {
            format!(
                "values: Invalid value: {}: {detail}",
                go_string_slice(&values)
            )
        };
        match op {
            Op::In | Op::NotIn if values.is_empty() => {
                errs.push(count_error(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Op::Equals | Op::DoubleEquals | Op::NotEquals if values.len() != 1 => {
                errs.push(count_error(
                    "exact-match compatibility requires one single value",
                ));
            }
            Op::Exists | Op::DoesNotExist if !values.is_empty() => {
                errs.push(count_error(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Op::GreaterThan | Op::LessThan => {
                if values.len() != 1 {
                    errs.push(count_error(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, \
                             the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = label_value_errors(v);
            if !value_errs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    value_errs.join("; ")
                ));
            }
        }
        if errs.is_empty() {
            Ok(Self { key, op, values })
        } else {
            Err(aggregate(errs))
        }
    }

    fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Op::Equals | Op::DoubleEquals | Op::In => value.is_some_and(listed),
            Op::NotEquals | Op::NotIn => value.is_none_or(|v| !listed(v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::GreaterThan | Op::LessThan => {
                let (Some(have), [want]) =
                    (value.and_then(|v| v.parse::<i64>().ok()), &self.values[..])
                else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.op == Op::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Op::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.op {
            Op::Equals => "=",
            Op::DoubleEquals => "==",
            Op::NotEquals => "!=",
            Op::In => " in ",
            Op::NotIn => " notin ",
            Op::GreaterThan => ">",
            Op::LessThan => "<",
            Op::Exists | Op::DoesNotExist => return Ok(()),
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let set = matches!(self.op, Op::In | Op::NotIn);
        let (open, close) = if set { ("(", ")") } else { ("", "") };
        write!(f, "{op}{open}{}{close}", values.join(","))
    }
}

/// A parsed label selector: all requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// A null metav1.LabelSelector selects nothing, unlike an empty one.
    nothing: bool,
}

impl LabelSelector {
    /// Parses the query-string syntax (`a=b,c!=d,e in (x,y),f notin (z),g,!h`,
    /// also `==`, `>` and `<`); the empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            items: lex(s),
            pos: 0,
        };
        let mut requirements = parser.parse().map_err(SelectorError)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Converts a metav1.LabelSelector (`matchLabels`, `matchExpressions`).
    /// An empty object selects everything; `null` selects nothing.
    pub fn from_object(selector: &Value) -> Result<Self, SelectorError> {
        let obj = match selector {
            Value::Null => {
                return Ok(Self {
                    requirements: Vec::new(),
                    nothing: true,
                });
            }
            Value::Object(obj) => obj,
            other => return Err(SelectorError(format!("invalid label selector: {other}"))),
        };
        let mut requirements = Vec::new();
        for (key, value) in obj
            .get("matchLabels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let value = json_text(value);
            requirements.push(
                Requirement::new(key.clone(), Op::Equals, vec![value]).map_err(SelectorError)?,
            );
        }
        let expressions = obj.get("matchExpressions").and_then(Value::as_array);
        for expr in expressions.into_iter().flatten() {
            let operator = expr
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let op = match operator {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => {
                    let msg = format!(
                        "{} is not a valid label selector operator",
                        go_quote(operator)
                    );
                    return Err(SelectorError(msg));
                }
            };
            let key = expr.get("key").map(json_text).unwrap_or_default();
            let values = expr.get("values").and_then(Value::as_array);
            let values = values.into_iter().flatten().map(json_text).collect();
            requirements.push(Requirement::new(key, op, values).map_err(SelectorError)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// An equality selector from a plain map (ReplicationController and
    /// Service `spec.selector`). Like Kubernetes' SelectorFromSet it does not
    /// validate, and an empty map matches everything: callers for which an
    /// empty selector must select nothing (Services) check `is_empty` first.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        let mut requirements: Vec<Requirement> = map
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Op::Equals,
                values: vec![json_text(v)],
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            requirements,
            nothing: false,
        }
    }

    /// Whether `labels` satisfies every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches a `metadata.labels` JSON object; `None` or a non-object counts
    /// as no labels.
    pub fn matches_value(&self, labels: Option<&Value>) -> bool {
        match labels.and_then(Value::as_object) {
            Some(map) => self.matches(map),
            None => self.matches(&Map::new()),
        }
    }

    /// True when the selector does not restrict anything (matches everything).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }
}

/// The canonical form Kubernetes prints (requirements sorted by key, set
/// values sorted), e.g. `app=kubia,tier in (a,b)`; empty for everything and
/// for nothing alike, as in Kubernetes.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A JSON scalar as label text; labels are strings, anything else is kept as
/// its JSON form so that it cannot match by accident.
fn json_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

// A port of Kubernetes' label selector lexer and parser, so that what parses,
// and every error message, is the same.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    ClosePar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Ident,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn symbol(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosePar,
        "," => Tok::Comma,
        "!" => Tok::Not,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn lex(s: &str) -> Vec<(Tok, &str)> {
    let b = s.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && is_whitespace(b[i]) {
            i += 1;
        }
        let start = i;
        if i == b.len() {
            items.push((Tok::End, ""));
            return items;
        }
        if is_special(b[i]) {
            // The longest run of symbols that is still an operator; a lone
            // symbol always is one, so `tok` is always replaced.
            let mut tok = Tok::End;
            while let Some(t) = b
                .get(i)
                .filter(|c| is_special(**c))
                .and_then(|_| symbol(&s[start..=i]))
            {
                tok = t;
                i += 1;
            }
            items.push((tok, &s[start..i]));
        } else {
            while i < b.len() && !is_special(b[i]) && !is_whitespace(b[i]) {
                i += 1;
            }
            let lit = &s[start..i];
            let tok = match lit {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident,
            };
            items.push((tok, lit));
        }
    }
}

/// Where the parser is: `in` and `notin` are identifiers where values go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    items: Vec<(Tok, &'a str)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn lookahead(&self, ctx: Ctx) -> (Tok, &'a str) {
        // `items` always ends with End; reading past it keeps returning End.
        let (tok, lit) = self.items[self.pos.min(self.items.len() - 1)];
        match tok {
            Tok::In | Tok::NotIn if ctx == Ctx::Values => (Tok::Ident, lit),
            _ => (tok, lit),
        }
    }

    fn consume(&mut self, ctx: Ctx) -> (Tok, &'a str) {
        let item = self.lookahead(ctx);
        self.pos += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Tok::Ident | Tok::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (tok, lit) = self.consume(Ctx::Values);
                    match tok {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let (next, lit) = self.lookahead(Ctx::Values);
                            if next != Tok::Ident && next != Tok::Not {
                                return Err(format!(
                                    "found '{lit}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!("found '{lit}', expected: ',' or 'end of string'"));
                        }
                    }
                }
                Tok::End => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.key_and_inferred_operator()?;
        if let Some(op) = unary {
            return Requirement::new(key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Op::In | Op::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        Requirement::new(key, op, values)
    }

    /// The key, and Exists or DoesNotExist when no binary operator follows.
    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Op>), String> {
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        let mut op = None;
        if tok == Tok::Not {
            op = Some(Op::DoesNotExist);
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Tok::Ident {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = label_key_errors(lit);
        if !errs.is_empty() {
            // The parser has no field path, which Go prints as "<nil>".
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(lit),
                errs.join("; ")
            ));
        }
        let (next, _) = self.lookahead(Ctx::Values);
        if op.is_none() && matches!(next, Tok::End | Tok::Comma) {
            op = Some(Op::Exists);
        }
        Ok((lit.to_owned(), op))
    }

    fn operator(&mut self) -> Result<Op, String> {
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => Op::In,
            Tok::Equals => Op::Equals,
            Tok::DoubleEquals => Op::DoubleEquals,
            Tok::GreaterThan => Op::GreaterThan,
            Tok::LessThan => Op::LessThan,
            Tok::NotIn => Op::NotIn,
            Tok::NotEquals => Op::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// `(a,b,...)`, sorted and deduplicated; empty entries are "".
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Tok::Ident | Tok::Comma => {
                // The list ends only in front of ')', which is consumed here.
                let values = self.identifiers()?;
                self.consume(Ctx::Values);
                Ok(values.into_iter().collect())
            }
            Tok::ClosePar => {
                self.consume(Ctx::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifiers(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Tok::Ident => {
                    set.insert(lit.to_owned());
                    let (next, lit) = self.lookahead(Ctx::Values);
                    match next {
                        Tok::Comma => {}
                        Tok::ClosePar => return Ok(set),
                        _ => return Err(format!("found '{lit}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    // A comma next to '(', ')' or another comma stands for "".
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (next, _) = self.lookahead(Ctx::Values);
                    if next == Tok::ClosePar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if next == Tok::Comma {
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<String, String> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if matches!(tok, Tok::End | Tok::Comma) {
            return Ok(String::new());
        }
        match self.consume(Ctx::Values) {
            (Tok::Ident, lit) => Ok(lit.to_owned()),
            (_, lit) => Err(format!("found '{lit}', expected: identifier")),
        }
    }
}

// ---------------------------------------------------------------------------
// Field selectors

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed field selector (`field=value`, `field==value`, `field!=value`,
/// comma-separated, `\,` `\=` `\\` escaped in values): all terms must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses the query-string syntax; the empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let value = unescape(rhs).map_err(SelectorError)?;
            terms.push(FieldTerm {
                field: field.to_owned(),
                value,
                equal: op != "!=",
            });
        }
        Ok(Self { terms })
    }

    /// Rejects fields that Kubernetes cannot select on for `kind`.
    pub fn check_supported(&self, kind: &str) -> Result<(), SelectorError> {
        match self.terms.iter().find(|t| !supported_field(kind, &t.field)) {
            Some(t) => Err(SelectorError(format!(
                "field label not supported: {}",
                t.field
            ))),
            None => Ok(()),
        }
    }

    /// Whether `obj` satisfies every term, reading fields with `field_value`.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| (field_value(obj, &t.field) == t.value) == t.equal)
    }

    /// The field paths the selector refers to.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|t| t.field.as_str())
    }
}

/// Splits on commas that are not escaped; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.bytes().enumerate() {
        match c {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b',' => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator; field names have no escapes.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    (0..term.len()).find_map(|i| {
        let rest = &term.as_bytes()[i..];
        let op = ["!=", "==", "="]
            .into_iter()
            .find(|op| rest.starts_with(op.as_bytes()))?;
        Some((&term[..i], op, &term[i + op.len()..]))
    })
}

fn unescape(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    ));
                }
                None => {
                    return Err("invalid field selector: invalid escape sequence: \\".to_owned());
                }
            },
            // Go prints the rune with %v, that is as its code point.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    u32::from(c)
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn supported_field(kind: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match kind {
        "Pod" => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        "Event" => matches!(
            field,
            "involvedObject.kind"
                | "involvedObject.namespace"
                | "involvedObject.name"
                | "involvedObject.uid"
                | "involvedObject.apiVersion"
                | "involvedObject.resourceVersion"
                | "involvedObject.fieldPath"
                | "reason"
                | "reportingComponent"
                | "source"
                | "type"
        ),
        "Secret" => field == "type",
        "Namespace" => field == "status.phase",
        "Node" => field == "spec.unschedulable",
        "ReplicaSet" | "ReplicationController" => field == "status.replicas",
        "Job" => field == "status.successful",
        _ => false,
    }
}

/// The value a field selector compares for `path` (a dotted path such as
/// `spec.nodeName`): strings as they are, booleans as "true"/"false",
/// numbers in decimal, anything missing as Go's zero value ("" for strings).
pub fn field_value(obj: &Value, path: &str) -> String {
    // Selector names that differ from the JSON path.
    let json_path = match path {
        "source" => "source.component",
        "reportingComponent" => "reportingController",
        "status.successful" => "status.succeeded",
        p => p,
    };
    match json_path.split('.').try_fold(obj, |v, key| v.get(key)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => match path {
            "spec.unschedulable" | "spec.hostNetwork" => "false".to_owned(),
            "status.replicas" | "status.successful" => "0".to_owned(),
            _ => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse_err(s: &str) -> String {
        LabelSelector::parse(s).unwrap_err().to_string()
    }

    const NAME_PART_REGEX: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', \
        and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', \
        regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_REGEX: &str = "a valid label must be an empty string or consist of alphanumeric \
        characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  \
        or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn parses_every_operator_and_prints_canonically() {
        let s = LabelSelector::parse("g,!h,f notin (z),e in (y,x),c!=d,a=b,k==v,n>1,m<9").unwrap();
        assert_eq!(
            s.to_string(),
            "a=b,c!=d,e in (x,y),f notin (z),g,!h,k==v,m<9,n>1"
        );
    }

    #[test]
    fn whitespace_is_ignored_between_tokens() {
        let s = LabelSelector::parse("  app = web ,  tier in ( a , b ) ").unwrap();
        assert_eq!(s.to_string(), "app=web,tier in (a,b)");
    }

    #[test]
    fn empty_string_selects_everything() {
        let s = LabelSelector::parse("").unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[])));
        assert_eq!(s.to_string(), "");
    }

    #[test]
    fn equality_and_inequality_match() {
        let s = LabelSelector::parse("app=web,tier!=db").unwrap();
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("tier", "fe")])));
    }

    #[test]
    fn set_operators_match_and_notin_accepts_missing_keys() {
        let s = LabelSelector::parse("env in (prod,qa),tier notin (db)").unwrap();
        assert!(s.matches(&labels(&[("env", "qa")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[("env", "qa"), ("tier", "db")])));
    }

    #[test]
    fn exists_and_does_not_exist_match() {
        let s = LabelSelector::parse("app,!canary").unwrap();
        assert!(s.matches(&labels(&[("app", "")])));
        assert!(!s.matches(&labels(&[("app", "x"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[])));
    }

    #[test]
    fn greater_and_less_than_compare_integers() {
        let s = LabelSelector::parse("gen>1,gen<5").unwrap();
        assert!(s.matches(&labels(&[("gen", "3")])));
        assert!(!s.matches(&labels(&[("gen", "5")])));
        assert!(!s.matches(&labels(&[("gen", "x")])));
    }

    #[test]
    fn empty_values_and_keywords_as_values() {
        let s = LabelSelector::parse("x in (foo,,baz),y,z notin (),w in (in,notin),v=").unwrap();
        assert_eq!(
            s.to_string(),
            "v=,w in (in,notin),x in (,baz,foo),y,z notin ()"
        );
        assert!(s.matches(&labels(&[("v", ""), ("w", "in"), ("x", ""), ("y", "1")])));
    }

    #[test]
    fn matches_json_maps_and_values() {
        let s = LabelSelector::parse("app=web").unwrap();
        let obj = json!({"app": "web", "n": 1});
        assert!(s.matches(obj.as_object().unwrap()));
        assert!(s.matches_value(Some(&obj)));
        assert!(!s.matches_value(None));
        let mut hash = HashMap::new();
        hash.insert("app".to_string(), "web".to_string());
        assert!(s.matches(&hash));
    }

    #[test]
    fn parse_errors_use_kubernetes_wording() {
        assert_eq!(
            parse_err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            parse_err("a=b c"),
            "found 'c', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("a=b,"),
            "found '', expected: identifier after ','"
        );
        assert_eq!(
            parse_err(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("a in (b"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            parse_err("a in ("),
            "unable to parse requirement: found '', expected: ',', ')' or identifier"
        );
        assert_eq!(
            parse_err("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
        assert_eq!(
            parse_err("a=("),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(
            parse_err("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("!("),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(
            parse_err("!a=b"),
            "found '=', expected: ',' or 'end of string'"
        );
    }

    #[test]
    fn parse_validates_keys_and_values() {
        assert_eq!(
            parse_err("a_=b"),
            format!("unable to parse requirement: <nil>: Invalid value: \"a_\": {NAME_PART_REGEX}")
        );
        assert_eq!(
            parse_err("a=b_"),
            format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"b_\": {LABEL_VALUE_REGEX}"
            )
        );
        assert_eq!(
            parse_err("a>x"),
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            parse_err("a in (-x,y_)"),
            format!(
                "unable to parse requirement: [values[0][a]: Invalid value: \"-x\": {LABEL_VALUE_REGEX}, \
                 values[1][a]: Invalid value: \"y_\": {LABEL_VALUE_REGEX}]"
            )
        );
    }

    #[test]
    fn from_object_converts_match_labels_and_expressions() {
        let sel = json!({"matchLabels": {"app": "kubia"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "canary", "operator": "DoesNotExist"}]});
        let s = LabelSelector::from_object(&sel).unwrap();
        assert_eq!(s.to_string(), "app=kubia,!canary,tier in (a,b)");
        assert!(s.matches(&labels(&[("app", "kubia"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[("app", "kubia"), ("tier", "a"), ("canary", "y")])));
    }

    #[test]
    fn from_object_empty_selects_everything_and_null_nothing() {
        let all = LabelSelector::from_object(&json!({})).unwrap();
        assert!(all.is_empty() && all.matches(&labels(&[])));
        let none = LabelSelector::from_object(&Value::Null).unwrap();
        assert!(!none.is_empty());
        assert!(!none.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn from_object_errors() {
        let err = |v: Value| LabelSelector::from_object(&v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]})),
            "\"Foo\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})),
            "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            err(json!({"matchLabels": {"a_": "b"}})),
            format!("key: Invalid value: \"a_\": {NAME_PART_REGEX}")
        );
        assert_eq!(err(json!("app=x")), "invalid label selector: \"app=x\"");
    }

    #[test]
    fn from_map_is_equality_and_empty_matches_everything() {
        let s = LabelSelector::from_map(json!({"b": "y", "a": "x"}).as_object().unwrap());
        assert_eq!(s.to_string(), "a=x,b=y");
        assert!(s.matches(&labels(&[("a", "x"), ("b", "y"), ("c", "z")])));
        assert!(!s.matches(&labels(&[("a", "x")])));
        let empty = LabelSelector::from_map(&Map::new());
        assert!(empty.is_empty() && empty.matches(&labels(&[])));
    }

    #[test]
    fn label_key_rules() {
        assert_eq!(validate_label_key("app"), Ok(()));
        assert_eq!(validate_label_key("example.com/My_app.1"), Ok(()));
        assert_eq!(
            validate_label_key("/a"),
            Err("prefix part must be non-empty".into())
        );
        assert_eq!(
            validate_label_key("Example.com/a"),
            Err("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
                 '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used \
                 for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                .into())
        );
        assert_eq!(
            validate_label_key("a/b/c"),
            Err("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                 with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
                 validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix \
                 and '/' (e.g. 'example.com/MyName')"
                .into())
        );
        assert_eq!(
            validate_label_key(&"a".repeat(64)),
            Err("name part must be no more than 63 characters".into())
        );
        assert_eq!(
            validate_label_key(""),
            Err(format!("name part must be non-empty; {NAME_PART_REGEX}"))
        );
        assert_eq!(validate_label_key("-a"), Err(NAME_PART_REGEX.into()));
    }

    #[test]
    fn label_value_rules() {
        assert_eq!(validate_label_value(""), Ok(()));
        assert_eq!(validate_label_value("My_value-1.0"), Ok(()));
        assert_eq!(
            validate_label_value(&"a".repeat(64)),
            Err("must be no more than 63 characters".into())
        );
        assert_eq!(validate_label_value("a b"), Err(LABEL_VALUE_REGEX.into()));
    }

    #[test]
    fn dns_name_rules() {
        assert!(dns1123_label_errors("my-name-1").is_empty());
        assert_eq!(dns1123_label_errors("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            dns1123_label_errors("A"),
            vec![
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must \
                  start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for \
                  validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(
            dns1123_label_errors(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert!(dns1123_subdomain_errors("a.b-c.d").is_empty());
        assert_eq!(dns1123_subdomain_errors("a..b").len(), 1);
        assert_eq!(
            dns1123_subdomain_errors(&"a".repeat(254)),
            vec!["must be no more than 253 characters"]
        );
        assert!(dns1035_label_errors("web-1").is_empty());
        assert_eq!(
            dns1035_label_errors("1web"),
            vec![
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an \
                  alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', \
                  regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }

    #[test]
    fn aggregate_dedupes_and_brackets() {
        assert_eq!(aggregate(vec!["a".into()]), "a");
        assert_eq!(
            aggregate(vec!["a".into(), "b".into(), "a".into()]),
            "[a, b]"
        );
        assert_eq!(aggregate(vec!["a".into(), "a".into()]), "a");
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"},
               "spec": {"nodeName": "n1", "restartPolicy": "Always"},
               "status": {"phase": "Running"}})
    }

    #[test]
    fn field_selector_matches_equal_and_not_equal() {
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Pending,metadata.name==p")
            .unwrap();
        assert!(s.matches(&pod()));
        assert!(
            !FieldSelector::parse("spec.nodeName!=n1")
                .unwrap()
                .matches(&pod())
        );
        let mut fields: Vec<&str> = s.fields().collect();
        fields.sort_unstable();
        assert_eq!(fields, ["metadata.name", "spec.nodeName", "status.phase"]);
    }

    #[test]
    fn field_selector_empty_matches_everything() {
        let s = FieldSelector::parse("").unwrap();
        assert!(s.matches(&json!({})));
        assert_eq!(s.fields().count(), 0);
    }

    #[test]
    fn missing_fields_compare_as_go_zero_values() {
        let unscheduled = json!({"spec": {}});
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches(&unscheduled)
        );
        assert!(
            FieldSelector::parse("spec.hostNetwork=false")
                .unwrap()
                .matches(&unscheduled)
        );
        assert!(
            FieldSelector::parse("spec.unschedulable=false")
                .unwrap()
                .matches(&unscheduled)
        );
        assert!(
            FieldSelector::parse("status.replicas=0")
                .unwrap()
                .matches(&unscheduled)
        );
        assert_eq!(
            field_value(&json!({"spec": {"hostNetwork": true}}), "spec.hostNetwork"),
            "true"
        );
        assert_eq!(
            field_value(&json!({"status": {"replicas": 3}}), "status.replicas"),
            "3"
        );
    }

    #[test]
    fn field_value_follows_kubernetes_field_names() {
        let event = json!({"source": {"component": "kubelet"}, "reportingController": "ctl"});
        assert_eq!(field_value(&event, "source"), "kubelet");
        assert_eq!(field_value(&event, "reportingComponent"), "ctl");
        assert_eq!(
            field_value(&json!({"status": {"succeeded": 2}}), "status.successful"),
            "2"
        );
    }

    #[test]
    fn field_selector_values_unescape() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert!(s.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
    }

    #[test]
    fn field_selector_errors_use_kubernetes_wording() {
        let err = |s: &str| FieldSelector::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("a=b,foo"),
            "invalid selector: 'a=b,foo'; can't understand 'foo'"
        );
        assert_eq!(
            err("a=b=c"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            err(r"a=b\x"),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            err(r"a=b\"),
            r"invalid field selector: invalid escape sequence: \"
        );
    }

    #[test]
    fn supported_fields_per_kind() {
        let check = |s: &str, kind: &str| FieldSelector::parse(s).unwrap().check_supported(kind);
        assert_eq!(check("spec.nodeName=a,status.podIP=b", "Pod"), Ok(()));
        assert_eq!(
            check("metadata.name=a,metadata.namespace=b", "Deployment"),
            Ok(())
        );
        assert_eq!(
            check("involvedObject.name=a,reason=b,source=c,type=d", "Event"),
            Ok(())
        );
        assert_eq!(check("type=Opaque", "Secret"), Ok(()));
        assert_eq!(check("status.phase=Active", "Namespace"), Ok(()));
        assert_eq!(check("spec.unschedulable=true", "Node"), Ok(()));
        assert_eq!(check("status.replicas=1", "ReplicaSet"), Ok(()));
        assert_eq!(check("status.replicas=1", "ReplicationController"), Ok(()));
        assert_eq!(check("status.successful=1", "Job"), Ok(()));
        assert_eq!(
            check("spec.foo=a", "Pod").unwrap_err().to_string(),
            "field label not supported: spec.foo"
        );
        assert_eq!(
            check("spec.replicas=1", "Deployment")
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.replicas"
        );
    }

    #[test]
    fn mutated_selectors_parse_or_fail_cleanly() {
        let corpus: &[&[u8]] = &[
            b"app=web,tier!=db,env in (prod, staging),!canary,release notin (a),x>3,y<10",
            b"metadata.name=a,status.phase!=Running,spec.nodeName==n1",
            b"example.com/key-1.a_b=value.x-y_z",
        ];
        crate::mutate::each_mutation(4, 20_000, corpus, |input| {
            let text = String::from_utf8_lossy(input);
            if let Ok(sel) = LabelSelector::parse(&text) {
                // What parses prints as something that parses again.
                LabelSelector::parse(&sel.to_string()).expect("a printed selector parses");
            }
            let _ = FieldSelector::parse(&text);
        });
    }
}

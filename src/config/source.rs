//! TOML sources with positions: every configuration error points at a file and a line.
//!
//! A file is parsed once into toml's spanned document; entries are then deserialized one at a time
//! (so one bad organisation does not hide the next one's errors) and any later, semantic error can
//! ask for the line of `organisation[3].clearance`.

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// One problem in the configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (as the user named it), or where else the value came from.
    pub origin: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key at fault, e.g. `organisation[2].clearance`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, in file order. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A parsed TOML file: its name for messages, its text for line numbers, and the spanned tree.
pub struct Doc<'a> {
    pub name: String,
    text: &'a str,
    pub root: Spanned<DeTable<'a>>,
}

/// Collects errors while a configuration is read.
#[derive(Default)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    /// An error not tied to a place in a file.
    pub fn general(
        &mut self,
        origin: impl Into<String>,
        key: Option<String>,
        message: impl Into<String>,
    ) {
        self.0.push(ConfigError {
            origin: origin.into(),
            line: None,
            column: None,
            key,
            message: message.into(),
        });
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl<'a> Doc<'a> {
    /// Parses a file; a syntax error is reported with its position and `None` returned.
    pub fn parse(name: impl Into<String>, text: &'a str, errors: &mut Errors) -> Option<Self> {
        let name = name.into();
        match DeTable::parse(text) {
            Ok(root) => Some(Doc { name, text, root }),
            Err(e) => {
                let (line, column) = e.span().map(|s| line_col(text, s.start)).unzip();
                errors.push(ConfigError {
                    origin: name,
                    line,
                    column,
                    key: None,
                    message: format!("not valid TOML: {}", e.message().trim()),
                });
                None
            }
        }
    }

    /// An error at a span of this file.
    pub fn error_at(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = span.map(|s| line_col(self.text, s.start)).unzip();
        ConfigError {
            origin: self.name.clone(),
            line,
            column,
            key,
            message: message.into(),
        }
    }

    /// An error at a dotted key path (`tls.certificate`, `organisation[2].endpoint[0].url`). If
    /// the key is absent the error points at its nearest present parent.
    pub fn error_key(&self, path: &str, message: impl Into<String>) -> ConfigError {
        self.error_at(self.span_of(path), Some(path.to_owned()), message)
    }

    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut span = None;
        let mut table: Option<&DeTable<'a>> = Some(self.root.get_ref());
        let mut value: Option<&Spanned<DeValue<'a>>> = None;
        for segment in path.split('.') {
            let (key, index) = match segment.split_once('[') {
                Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (segment, None),
            };
            let t = match (table, value) {
                (Some(t), _) => t,
                (None, Some(v)) => match v.get_ref() {
                    DeValue::Table(t) => t,
                    _ => break,
                },
                _ => break,
            };
            let Some((k, v)) = t.get_key_value(key) else {
                break;
            };
            // Point at the key: a reader looks for `clearance = ...`, not for the value.
            span = Some(k.span());
            value = Some(v);
            table = None;
            if let Some(i) = index {
                let Some(item) = v.get_ref().as_array().and_then(|a| a.get(i)) else {
                    break;
                };
                span = Some(item.span());
                value = Some(item);
            }
        }
        span.or_else(|| Some(self.root.span()))
    }

    /// Top-level keys other than the allowed ones are errors: a misspelt section is silently
    /// ignored otherwise, and ignoring configuration is how a safeguard goes missing.
    pub fn reject_unknown_top_level(&self, allowed: &[&str], errors: &mut Errors) {
        for (k, _) in self.root.get_ref().iter() {
            let name: &str = k.get_ref();
            if !allowed.contains(&name) {
                errors.push(self.error_at(
                    Some(k.span()),
                    Some(name.to_owned()),
                    format!("unknown key; expected {}", allowed.join(", ")),
                ));
            }
        }
    }

    /// The entries of an array of tables (`[[organisation]]`), each as a spanned value.
    pub fn entries(&self, key: &str, errors: &mut Errors) -> Vec<Spanned<DeValue<'a>>> {
        match self.root.get_ref().get(key) {
            None => Vec::new(),
            Some(v) => match v.get_ref().as_array() {
                Some(items) => items.iter().cloned().collect(),
                None => {
                    errors.push(self.error_key(
                        key,
                        format!("`{key}` must be an array of tables, written [[{key}]]"),
                    ));
                    Vec::new()
                }
            },
        }
    }

    /// Deserializes one value, reporting a type error or unknown key at its exact position.
    pub fn deserialize<T: DeserializeOwned>(
        &self,
        value: &Spanned<DeValue<'a>>,
        key: &str,
        errors: &mut Errors,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().or_else(|| Some(value.span()));
                errors.push(self.error_at(
                    span,
                    Some(key.to_owned()),
                    e.message().trim().to_owned(),
                ));
                None
            }
        }
    }

    /// The span of a key within one entry (for semantic errors found after deserializing).
    pub fn entry_field(&self, entry: &Spanned<DeValue<'a>>, field: &str) -> Option<Range<usize>> {
        let mut v = entry;
        let mut span = Some(entry.span());
        for segment in field.split('.') {
            let (key, index) = match segment.split_once('[') {
                Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (segment, None),
            };
            let Some((k, next)) = v.get_ref().as_table().and_then(|t| t.get_key_value(key)) else {
                break;
            };
            span = Some(k.span());
            v = next;
            if let Some(i) = index {
                let Some(item) = next.get_ref().as_array().and_then(|a| a.get(i)) else {
                    break;
                };
                span = Some(item.span());
                v = item;
            }
        }
        span
    }
}

/// A parsed file as a layer of the `config` crate (which layers the defaults, the user's file
/// and the environment), so that the TOML is parsed once: the same tree gives the layer its
/// values and the errors their lines.
#[derive(Debug, Clone)]
pub struct Layer {
    map: config::Map<String, config::Value>,
}

impl Layer {
    pub fn of(doc: &Doc<'_>) -> Self {
        let origin = doc.name.clone();
        let map = doc
            .root
            .get_ref()
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), layer_value(&origin, v.get_ref())))
            .collect();
        Layer { map }
    }

    /// A top-level string setting, e.g. `state_dir`.
    pub fn string(&self, key: &str) -> Option<String> {
        self.map.get(key).and_then(|v| v.clone().into_string().ok())
    }
}

impl config::Source for Layer {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.map.clone())
    }
}

fn layer_value(origin: &String, v: &DeValue<'_>) -> config::Value {
    use config::ValueKind as K;
    let kind = match v {
        DeValue::String(s) => K::String(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            match i64::from_str_radix(&digits, i.radix()) {
                Ok(n) => K::I64(n),
                // Out of range for i64: kept as text, so that a typed field reports it.
                Err(_) => K::String(i.to_string()),
            }
        }
        DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
            Ok(x) => K::Float(x),
            Err(_) => K::String(f.as_str().to_owned()),
        },
        DeValue::Boolean(b) => K::Boolean(*b),
        DeValue::Datetime(d) => K::String(d.to_string()),
        DeValue::Array(a) => K::Array(a.iter().map(|x| layer_value(origin, x.get_ref())).collect()),
        DeValue::Table(t) => K::Table(
            t.iter()
                .map(|(k, x)| (k.get_ref().to_string(), layer_value(origin, x.get_ref())))
                .collect(),
        ),
    };
    config::Value::new(Some(origin), kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 4));
    }

    #[test]
    fn keys_are_located_in_nested_tables_and_arrays() {
        let text = "[tls]\ncertificate = \"x\"\n\n[[org]]\nid = \"a\"\n[[org]]\nid = \"b\"\nclearance = \"Z\"\n";
        let mut errors = Errors::default();
        let doc = Doc::parse("f.toml", text, &mut errors).unwrap();
        let at = |p: &str| doc.error_key(p, "m").line;
        assert_eq!(at("tls.certificate"), Some(2));
        assert_eq!(at("org[1].clearance"), Some(8));
        // An absent key points at the nearest parent that exists: the second entry.
        assert!(
            matches!(at("org[1].missing"), Some(6 | 7)),
            "{:?}",
            at("org[1].missing")
        );
        let entries = doc.entries("org", &mut errors);
        assert_eq!(entries.len(), 2);
        let span = doc.entry_field(&entries[1], "clearance");
        assert_eq!(doc.error_at(span, None, "m").line, Some(8));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let mut errors = Errors::default();
        assert!(Doc::parse("bad.toml", "a = 1\nb = = 2\n", &mut errors).is_none());
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].line, Some(2));
        assert!(errors.0[0].to_string().starts_with("bad.toml:2:"));
    }

    #[test]
    fn a_parsed_file_layers_the_values_it_holds() {
        use config::Source;
        let text = "state_dir = \"/var/lib/postern\"\n[limits]\nmax_payload_bytes = 1_048_576\nmask = 0xff\nratio = 0.5\non = true\nlist = [\"a\", \"b\"]\nwhen = 2026-12-02\n";
        let mut errors = Errors::default();
        let doc = Doc::parse("f.toml", text, &mut errors).unwrap();
        let layer = Layer::of(&doc);
        assert_eq!(
            layer.string("state_dir").as_deref(),
            Some("/var/lib/postern")
        );
        let map = layer.collect().unwrap();
        let limits = map["limits"].clone().into_table().unwrap();
        assert_eq!(
            limits["max_payload_bytes"].clone().into_int().unwrap(),
            1_048_576
        );
        assert_eq!(limits["mask"].clone().into_int().unwrap(), 255);
        assert_eq!(limits["ratio"].clone().into_float().unwrap(), 0.5);
        assert!(limits["on"].clone().into_bool().unwrap());
        assert_eq!(limits["list"].clone().into_array().unwrap().len(), 2);
        assert_eq!(limits["when"].clone().into_string().unwrap(), "2026-12-02");
    }
}

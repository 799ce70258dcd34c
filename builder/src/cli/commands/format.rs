//! `--format` for the commands that print rows (`images`, `history`, `du`)
//! and objects (`inspect`), with Docker's conventions: `table` (the default
//! table), `json` (one JSON object per line), or a template.
//!
//! Templates are a tiny subset of Go's: text with `{{.Field}}` (the field's
//! value: strings as they are, anything else as JSON), `{{json .Field}}` and
//! `{{json .}}` (the whole row). `\t` and `\n` in the text are a tab and a
//! newline. A template starting `table ` prints a header row (each field's
//! column name) first and lays the tab-separated cells out as a table. Any
//! other action, or a field the rows do not have, is a usage error that
//! names the fields there are.

use serde::ser::{Serialize, Serializer};
use serde_json::Value;

use super::table::Table;
use crate::cli::failure::Failure;

/// A field of a command's rows: its name in templates and JSON, and its
/// column name in a `table` template's header.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub header: &'static str,
}

pub const fn field(name: &'static str, header: &'static str) -> Field {
    Field { name, header }
}

/// One row (or inspected object): values by field name. Its JSON has the
/// keys in the order they were added, or sorted after [`Row::sorted`] (as
/// Docker's rows, which are Go maps, print them).
#[derive(Debug, Default)]
pub struct Row(Vec<(&'static str, Value)>);

impl Row {
    pub fn new() -> Row {
        Row::default()
    }

    pub fn with(mut self, name: &'static str, value: impl Into<Value>) -> Row {
        self.0.push((name, value.into()));
        self
    }

    /// The row with its keys sorted.
    pub fn sorted(mut self) -> Row {
        self.0.sort_by_key(|(name, _)| *name);
        self
    }

    /// A field's value; `None` for a field this row leaves out.
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The row as one line of JSON, its keys in field order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a row always serialises")
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// What `--format` asked for.
#[derive(Debug)]
pub enum Format {
    /// The command's own table (the default).
    Table,
    /// One JSON object per row, a line each.
    Json,
    Template(Template),
}

impl Format {
    /// Parses `--format TEXT` for rows with `fields`.
    pub fn parse(text: &str, fields: &'static [Field]) -> Result<Format, Failure> {
        match text.trim() {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            _ => Template::parse(text, fields).map(Format::Template),
        }
    }
}

impl Format {
    /// `rows` as this format prints them; `table` renders the command's own
    /// table, which only it knows how to lay out.
    pub fn render(self, rows: &[Row], table: impl FnOnce() -> String) -> String {
        match self {
            Format::Table => table(),
            Format::Json => json_lines(rows),
            Format::Template(template) => template.render(rows),
        }
    }
}

/// `rows` as `--format json` prints them: a JSON object per line.
pub fn json_lines(rows: &[Row]) -> String {
    rows.iter().map(|row| row.to_json() + "\n").collect()
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    /// Whether it started `table `: a header row, and cells laid out.
    table: bool,
    parts: Vec<Part>,
    fields: &'static [Field],
}

#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    /// `{{.Name}}`
    Field(&'static str),
    /// `{{json .Name}}`, or `{{json .}}` (`None`).
    Json(Option<&'static str>),
}

impl Template {
    pub fn parse(text: &str, fields: &'static [Field]) -> Result<Template, Failure> {
        // Docker's reading: a `table` prefix, spaces around trimmed, and the
        // escapes `\t` and `\n`.
        let (table, body) = match text.trim_start().strip_prefix("table") {
            Some(rest) if rest.starts_with(char::is_whitespace) || rest.starts_with("{{") => (true, rest),
            _ => (false, text),
        };
        let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let inside = &rest[start + 2..];
            let end = inside.find("}}").ok_or_else(|| {
                usage(format!("--format {text:?}: a {{{{ is not closed by }}}}"), fields)
            })?;
            parts.push(action(&inside[..end], fields)?);
            rest = &inside[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { table, parts, fields })
    }

    /// Every row through the template, a line each (after the header row
    /// and laid out as a table for a `table ` template).
    pub fn render(&self, rows: &[Row]) -> String {
        if !self.table {
            return rows.iter().map(|row| self.expand(row) + "\n").collect();
        }
        let mut lines: Vec<Vec<String>> = Vec::new();
        for text in std::iter::once(self.header()).chain(rows.iter().map(|row| self.expand(row))) {
            lines.extend(text.split('\n').map(|line| line.split('\t').map(String::from).collect()));
        }
        let columns = lines.iter().map(Vec::len).max().unwrap_or(1);
        for line in &mut lines {
            line.resize(columns, String::new());
        }
        let header: Vec<&str> = lines[0].iter().map(String::as_str).collect();
        let mut table = Table::new(&header);
        for line in lines.drain(1..) {
            table.row(line);
        }
        table.render()
    }

    fn expand(&self, row: &Row) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(name) => match row.get(name) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Null) | None => {}
                    Some(other) => out.push_str(&other.to_string()),
                },
                Part::Json(Some(name)) => out.push_str(&row.get(name).unwrap_or(&Value::Null).to_string()),
                Part::Json(None) => out.push_str(&row.to_json()),
            }
        }
        out
    }

    /// The template with each field replaced by its column name.
    fn header(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(name) | Part::Json(Some(name)) => out.push_str(
                    self.fields.iter().find(|f| f.name == *name).map_or(*name, |f| f.header),
                ),
                Part::Json(None) => {}
            }
        }
        out
    }
}

/// One `{{…}}`: `.Field`, `json .` or `json .Field`.
fn action(inside: &str, fields: &'static [Field]) -> Result<Part, Failure> {
    let field = |word: &str| -> Result<Option<&'static str>, Failure> {
        let Some(name) = word.strip_prefix('.') else {
            return Err(unsupported(inside, fields));
        };
        if name.is_empty() {
            return Ok(None);
        }
        match fields.iter().find(|f| f.name == name) {
            Some(f) => Ok(Some(f.name)),
            None => Err(usage(format!("--format: no field {name:?} in {{{{{}}}}}", inside.trim()), fields)),
        }
    };
    match inside.split_whitespace().collect::<Vec<_>>().as_slice() {
        [word] => field(word)?.map(Part::Field).ok_or_else(|| unsupported(inside, fields)),
        ["json", word] => Ok(Part::Json(field(word)?)),
        _ => Err(unsupported(inside, fields)),
    }
}

fn unsupported(inside: &str, fields: &[Field]) -> Failure {
    usage(
        format!(
            "--format: {{{{{}}}}} is not supported: a template may use {{{{.Field}}}}, {{{{json .}}}} and {{{{json .Field}}}}",
            inside.trim()
        ),
        fields,
    )
}

/// A usage error that ends by naming the fields there are.
fn usage(message: String, fields: &[Field]) -> Failure {
    let names: Vec<String> = fields.iter().map(|f| format!(".{}", f.name)).collect();
    Failure::Usage(format!("{message}; the fields are {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[Field] = &[
        field("Repository", "REPOSITORY"),
        field("Tag", "TAG"),
        field("ID", "IMAGE ID"),
        field("Count", "COUNT"),
    ];

    fn rows() -> Vec<Row> {
        vec![
            Row::new().with("Repository", "app").with("Tag", "1.0").with("ID", "16f1b2bc3ee4").with("Count", 3),
            Row::new().with("Repository", "<none>").with("Tag", "<none>").with("ID", "699f8d0f3d0b").with("Count", 0),
        ]
    }

    fn template(text: &str) -> Template {
        match Format::parse(text, FIELDS).unwrap() {
            Format::Template(t) => t,
            other => panic!("{text:?} parsed as {other:?}"),
        }
    }

    fn usage_message(text: &str) -> String {
        match Format::parse(text, FIELDS) {
            Err(Failure::Usage(message)) => message,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn table_and_json_are_keywords() {
        assert!(matches!(Format::parse("table", FIELDS).unwrap(), Format::Table));
        assert!(matches!(Format::parse(" json ", FIELDS).unwrap(), Format::Json));
        assert_eq!(
            json_lines(&rows()[..1]),
            "{\"Repository\":\"app\",\"Tag\":\"1.0\",\"ID\":\"16f1b2bc3ee4\",\"Count\":3}\n"
        );
        let sorted: Vec<Row> = rows().into_iter().map(Row::sorted).collect();
        assert_eq!(
            json_lines(&sorted[1..]),
            "{\"Count\":0,\"ID\":\"699f8d0f3d0b\",\"Repository\":\"<none>\",\"Tag\":\"<none>\"}\n"
        );
    }

    #[test]
    fn fields_are_replaced_row_by_row() {
        let t = template("{{.Repository}}:{{ .Tag }} has {{.Count}}");
        assert_eq!(t.render(&rows()), "app:1.0 has 3\n<none>:<none> has 0\n");
        // Text alone is printed for every row; a field a row leaves out is empty.
        assert_eq!(template("x").render(&rows()), "x\nx\n");
        assert_eq!(template("[{{.Tag}}]").render(&[Row::new()]), "[]\n");
    }

    #[test]
    fn json_of_a_field_or_the_whole_row() {
        let t = template("{{json .Tag}} {{json .Count}}");
        assert_eq!(t.render(&rows()[..1]), "\"1.0\" 3\n");
        let whole = template("{{json .}}").render(&rows()[..1]);
        assert_eq!(whole, json_lines(&rows()[..1]));
        let nested = Row::new().with("ID", serde_json::json!({"Cmd": ["sh"]}));
        assert_eq!(template("{{.ID}}").render(&[nested]), "{\"Cmd\":[\"sh\"]}\n");
    }

    #[test]
    fn a_table_template_has_a_header_and_aligned_columns() {
        let t = template("table {{.Repository}}\\t{{.ID}}");
        assert_eq!(
            t.render(&rows()),
            "REPOSITORY   IMAGE ID\n\
             app          16f1b2bc3ee4\n\
             <none>       699f8d0f3d0b\n"
        );
        assert_eq!(template("table {{.Tag}}").render(&[]), "TAG\n", "the header without rows");
        // Without the prefix, `\t` is a plain tab and there is no header.
        assert_eq!(template("{{.Tag}}\\t{{.Count}}").render(&rows()[..1]), "1.0\t3\n");
    }

    #[test]
    fn an_unknown_field_names_the_valid_ones() {
        let message = usage_message("{{.Size}}");
        assert!(message.contains("no field \"Size\""), "{message}");
        assert!(message.contains(".Repository, .Tag, .ID, .Count"), "{message}");
        assert!(usage_message("{{json .Nope}}").contains("no field \"Nope\""));
        assert!(usage_message("table {{.repository}}").contains("no field \"repository\""));
    }

    #[test]
    fn anything_else_is_refused() {
        for text in ["{{.}}", "{{upper .Tag}}", "{{if .Tag}}x{{end}}", "{{json}}", "{{Tag}}", "{{.Tag | json}}"] {
            let message = usage_message(text);
            assert!(message.contains("is not supported"), "{text}: {message}");
            assert!(message.contains("the fields are .Repository"), "{text}: {message}");
        }
        assert!(usage_message("{{.Tag").contains("not closed"));
    }
}

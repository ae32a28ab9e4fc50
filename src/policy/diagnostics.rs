//! Problems in policy and schema files, reported as a compiler would:
//! `file:line:column: reason`, then the source excerpt with the span marked.

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use serde::Serialize;
use std::fmt;

/// One problem found while loading policies or the schema.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// File the problem is in (as given on the command line or in configuration).
    pub file: String,
    /// 1-based line, 0 when the problem has no position.
    pub line: usize,
    /// 1-based column, 0 when the problem has no position.
    pub column: usize,
    /// What is wrong, with Cedar's help text when it has one.
    pub message: String,
    /// The excerpt rendered with the span underlined.
    #[serde(skip)]
    pub rendered: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.file, self.line, self.column, self.message
            )?;
        } else {
            write!(f, "{}: error: {}", self.file, self.message)?;
        }
        if !self.rendered.is_empty() {
            write!(f, "\n{}", self.rendered)?;
        }
        Ok(())
    }
}

/// 1-based line and column of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset.min(src.len())).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A diagnostic shown against a named source file instead of its own source.
struct InFile<'a> {
    inner: &'a dyn Diagnostic,
    source: NamedSource<String>,
}

impl fmt::Debug for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.inner, f)
    }
}

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.inner, f)
    }
}

impl std::error::Error for InFile<'_> {}

impl Diagnostic for InFile<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.code()
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.help()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.inner.labels()
    }
}

/// Turns a diagnostic about `src` (the text of `file`) into a [`Problem`].
pub fn problem(file: &str, src: &str, diag: &dyn Diagnostic) -> Problem {
    let offset = diag
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = offset.map_or((0, 0), |o| line_col(src, o));
    let mut message = diag.to_string();
    if let Some(help) = diag.help() {
        message = format!("{message} (help: {help})");
    }
    let shown = InFile {
        inner: diag,
        source: NamedSource::new(file, src.to_string()),
    };
    let mut rendered = String::new();
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor());
    if handler.render_report(&mut rendered, &shown).is_err() {
        rendered.clear();
    }
    Problem {
        file: file.to_string(),
        line,
        column,
        message,
        rendered,
    }
}

/// A problem at a known byte offset, with no Cedar diagnostic behind it.
pub fn problem_at(file: &str, src: &str, offset: Option<usize>, message: String) -> Problem {
    let (line, column) = offset.map_or((0, 0), |o| line_col(src, o));
    Problem {
        file: file.to_string(),
        line,
        column,
        message,
        rendered: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn offsets_map_to_one_based_lines_and_columns() {
        let src = "ab\ncd\n\nxyz";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 4), (2, 2));
        assert_eq!(line_col(src, 7), (4, 1));
        assert_eq!(line_col(src, 999), (4, 4));
    }
}

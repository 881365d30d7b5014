//! Diagnostics: every problem the parser and validator find, each with a position,
//! printed like a compiler does (`file:line:col: error: message`).

use std::fmt;

use serde::Serialize;

/// A position in the source file: 1-based line and column. Kept to 8 bytes: every
/// node of a parsed file carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub fn new(line: usize, col: usize) -> Self {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            line: clamp(line),
            col: clamp(col),
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a fleet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    #[serde(flatten)]
    pub loc: Loc,
    pub message: String,
    /// Set on a refusal that is not a fault of the file's form but a bound of the
    /// controller's ([`super::bounds::TOO_LARGE`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.loc, self.severity, self.message
        )
    }
}

/// The problems of one file, errors and warnings, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, file: &str, loc: Loc, message: impl Into<String>) {
        self.push(Severity::Error, file, loc, message.into());
    }

    pub fn warning(&mut self, file: &str, loc: Loc, message: impl Into<String>) {
        self.push(Severity::Warning, file, loc, message.into());
    }

    /// An error that says the fleet is past one of the controller's bounds (see
    /// [`super::bounds`]).
    pub fn too_large(&mut self, file: &str, loc: Loc, message: impl Into<String>) {
        self.coded(file, loc, super::bounds::TOO_LARGE, message);
    }

    /// An error with a code callers tell apart from a fault of the file's form (a bound,
    /// a module the catalog cannot resolve).
    pub fn coded(&mut self, file: &str, loc: Loc, code: &'static str, message: impl Into<String>) {
        self.push(Severity::Error, file, loc, message.into());
        if let Some(last) = self.items.last_mut() {
            last.code = Some(code);
        }
    }

    /// Whether some error carries `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors().any(|d| d.code == Some(code))
    }

    fn push(&mut self, severity: Severity, file: &str, loc: Loc, message: String) {
        self.items.push(Diagnostic {
            severity,
            file: file.to_owned(),
            loc,
            message,
            code: None,
        });
    }

    /// Whether some error is a bound of the controller's rather than a fault of the file.
    pub fn is_too_large(&self) -> bool {
        self.has_code(super::bounds::TOO_LARGE)
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorts by position so that output reads top to bottom like the file.
    pub fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (&a.file, a.loc, a.severity).cmp(&(&b.file, b.loc, b.severity)));
        self.items.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to a misspelt word, if one is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 4);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` when there is a close candidate, else nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match closest(word, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["edge-cdn", "edge-base"];
        assert_eq!(closest("edge-cnd", names), Some("edge-cdn"));
        assert_eq!(closest("edgecdn", names), Some("edge-cdn"));
        assert_eq!(closest("database", names), None);
        assert_eq!(
            did_you_mean("extend", ["extends", "name"]),
            "; did you mean `extends`?"
        );
        assert_eq!(did_you_mean("zzz", ["extends"]), "");
    }

    #[test]
    fn prints_like_a_compiler_in_source_order() {
        let mut d = Diagnostics::default();
        d.warning("f.yaml", Loc::new(9, 3), "late");
        d.error("f.yaml", Loc::new(2, 1), "early");
        d.sort();
        assert_eq!(
            d.to_string(),
            "f.yaml:2:1: error: early\nf.yaml:9:3: warning: late\n"
        );
        assert!(d.has_errors());
        assert_eq!(d.warnings().count(), 1);
    }
}

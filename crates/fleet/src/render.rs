//! Showing a plan: to people, like `terraform plan`, and to machines as JSON or YAML.

use std::collections::HashMap;
use std::fmt::Write;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use super::object::{ObjectKind, Spec};
use super::plan::{ObjectDiff, Operation, Plan};
use super::spec_diff::{FieldChange, field_changes};
use super::waves::Rollout;

/// Whether to colour the text; the caller decides from the terminal and NO_COLOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Never,
    Always,
}

struct Palette {
    add: Style,
    update: Style,
    delete: Style,
    heading: Style,
    warn: Style,
}

impl Palette {
    fn new(colour: Colour) -> Self {
        let c = |s: Style| {
            if colour == Colour::Always {
                s
            } else {
                Style::new()
            }
        };
        Self {
            add: c(AnsiColor::Green.on_default()),
            update: c(AnsiColor::Yellow.on_default()),
            delete: c(AnsiColor::Red.on_default()),
            heading: c(Style::new().bold()),
            warn: c(AnsiColor::Magenta.on_default().bold()),
        }
    }

    fn of(&self, op: Operation) -> Style {
        match op {
            Operation::Create => self.add,
            Operation::Update => self.update,
            Operation::Delete => self.delete,
        }
    }
}

/// Values as compact JSON: strings quoted, lists on one line.
fn show(v: &Option<Value>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "(none)".to_owned(),
    }
}

/// The plan for people: grouped by kind, `+` add, `~` update with old -> new, `-` delete,
/// then conflicts, exclusions and a one-line summary.
pub fn render_text(plan: &Plan, colour: Colour) -> String {
    let p = Palette::new(colour);
    let mut out = String::new();
    if plan.is_empty() && plan.conflicts.is_empty() {
        out.push_str("No changes. The cluster matches the fleet file.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{}Plan {}{} for revision {}\n",
        p.heading.render(),
        plan.plan_id,
        p.heading.render_reset(),
        plan.revision
    );
    let created = created_specs(plan);
    for kind in ObjectKind::ALL {
        let mut entries = plan.diff.iter().filter(|d| d.kind == kind).peekable();
        if entries.peek().is_none() {
            continue;
        }
        let _ = writeln!(
            out,
            "{}{kind}{}",
            p.heading.render(),
            p.heading.render_reset()
        );
        for d in entries {
            let style = p.of(d.operation);
            let _ = writeln!(
                out,
                "  {}{} {}{}",
                style.render(),
                d.operation.symbol(),
                d.name,
                style.render_reset()
            );
            for line in detail_lines(&created, d) {
                let _ = writeln!(
                    out,
                    "      {}{line}{}",
                    style.render(),
                    style.render_reset()
                );
            }
        }
    }
    if !plan.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "{}Conflicts (not planned){}",
            p.warn.render(),
            p.warn.render_reset()
        );
        for c in &plan.conflicts {
            let _ = writeln!(
                out,
                "  {}!{} {}",
                p.warn.render(),
                p.warn.render_reset(),
                c.message
            );
        }
    }
    if !plan.excluded.is_empty() {
        let names: Vec<String> = plan.excluded.iter().map(|r| r.to_string()).collect();
        let _ = writeln!(out, "Excluded: {}", names.join(", "));
    }
    if let Some(rollout) = plan.rollout.as_ref() {
        for (i, line) in rollout_lines(rollout).iter().enumerate() {
            let style = if i == 0 { p.heading } else { Style::new() };
            let _ = writeln!(out, "{}{line}{}", style.render(), style.render_reset());
        }
    }
    let t = plan.summary.total();
    let _ = writeln!(
        out,
        "\n{}Plan:{} {} to add, {} to change, {} to delete.",
        p.heading.render(),
        p.heading.render_reset(),
        t.add,
        t.update,
        t.delete
    );
    out
}

/// How a staged plan rolls out, for people: a heading, a line per wave, the topology
/// notes and the blast radius per region. Nothing for a plan that goes out in one wave
/// with nothing to note.
pub fn rollout_lines(rollout: &Rollout) -> Vec<String> {
    if rollout.waves.len() < 2 && rollout.findings.is_empty() && rollout.regions.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!("Rollout ({})", rollout.policy)];
    for (i, w) in rollout.waves.iter().enumerate() {
        out.push(format!(
            "  wave {}/{} {}: {} actions, {} machines disrupted",
            i + 1,
            rollout.waves.len(),
            w.name,
            w.actions,
            w.disrupted
        ));
    }
    for f in &rollout.findings {
        out.push(format!("  ! {f}"));
    }
    for r in &rollout.regions {
        let budget = match r.allowed {
            Some(a) if r.exceeded => format!(", over its budget of {a}"),
            Some(a) => format!(", within its budget of {a}"),
            None => String::new(),
        };
        out.push(format!(
            "  region {}: {} of {} machines disrupted{budget}",
            r.region, r.disrupted, r.nodes
        ));
    }
    out
}

/// One line under a plan entry, its parts apart (values from git may contain ` -> `, so
/// a joined line can be made to look like another change): a field's path, the old value
/// for an update, and the new value.
#[derive(Debug, Clone, PartialEq)]
pub struct DetailLine {
    pub path: String,
    pub old: Option<String>,
    pub new: String,
}

impl DetailLine {
    /// `path: value` or `path: old -> new`.
    pub fn text(&self) -> String {
        match &self.old {
            Some(old) => format!("{}: {old} -> {}", self.path, self.new),
            None => format!("{}: {}", self.path, self.new),
        }
    }
}

/// `path: old -> new`; for a list where only a few same-position items change (a module
/// re-pinned), just those items, since the whole list would hide the change.
pub fn change_lines(f: &FieldChange) -> Vec<String> {
    change_parts(f).iter().map(DetailLine::text).collect()
}

/// [`change_lines`], its parts apart.
pub fn change_parts(f: &FieldChange) -> Vec<DetailLine> {
    if let (Some(Value::Array(old)), Some(Value::Array(new))) = (&f.old, &f.new)
        && old.len() == new.len()
    {
        let changed: Vec<usize> = (0..old.len()).filter(|i| old[*i] != new[*i]).collect();
        if changed.len() * 2 < old.len() {
            return changed
                .iter()
                .map(|i| DetailLine {
                    path: format!("{}[{i}]", f.path),
                    old: Some(old[*i].to_string()),
                    new: new[*i].to_string(),
                })
                .collect();
        }
    }
    vec![DetailLine {
        path: f.path.clone(),
        old: Some(show(&f.old)),
        new: show(&f.new),
    }]
}

/// The lines under one entry of the plan: a create's whole spec as `path: value`, an
/// update's changed fields as `path: old -> new`; `created` is [`created_specs`].
pub fn detail_lines(created: &HashMap<(ObjectKind, &str), &Spec>, d: &ObjectDiff) -> Vec<String> {
    detail_parts(created, d)
        .iter()
        .map(DetailLine::text)
        .collect()
}

/// [`detail_lines`], their parts apart.
pub fn detail_parts(
    created: &HashMap<(ObjectKind, &str), &Spec>,
    d: &ObjectDiff,
) -> Vec<DetailLine> {
    match d.operation {
        // A create's fields are its whole spec, which the action carries.
        Operation::Create => created
            .get(&(d.kind, d.name.as_str()))
            .map(|spec| field_changes(&Value::Null, &spec.to_json()))
            .unwrap_or_default()
            .iter()
            .map(|f| DetailLine {
                path: f.path.clone(),
                old: None,
                new: show(&f.new),
            })
            .collect(),
        _ => d.fields.iter().flat_map(change_parts).collect(),
    }
}

/// The spec each create applies, by kind and name.
pub fn created_specs(plan: &Plan) -> HashMap<(ObjectKind, &str), &Spec> {
    plan.actions
        .iter()
        .filter(|a| a.operation == Operation::Create)
        .filter_map(|a| Some(((a.kind, a.name.as_str()), a.spec.as_deref()?)))
        .collect()
}

/// The one-line per-kind summary: `templates 1 update; nodes 1 add, 2 update, 1 delete`.
pub fn summary_line(plan: &Plan) -> String {
    let parts: Vec<String> = ObjectKind::ALL
        .iter()
        .filter_map(|k| {
            let c = plan.summary.of_kind(*k);
            let counts: Vec<String> = [(c.add, "add"), (c.update, "update"), (c.delete, "delete")]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            (!counts.is_empty()).then(|| format!("{} {}", k.summary_key(), counts.join(", ")))
        })
        .collect();
    if parts.is_empty() {
        "no changes".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The plan for machines as JSON, with the field names of SyncRun's status.
pub fn render_json(plan: &Plan) -> String {
    let mut s = serde_json::to_string_pretty(plan).expect("a plan serializes");
    s.push('\n');
    s
}

/// The plan for machines as YAML.
pub fn render_yaml(plan: &Plan) -> String {
    serde_yaml_ng::to_string(plan).expect("a plan serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_with_an_arrow_stays_one_value() {
        let f = FieldChange {
            path: "metadata.note".into(),
            old: Some(json!("a")),
            new: Some(json!("b -> c")),
        };
        let parts = change_parts(&f);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].path, "metadata.note");
        assert_eq!(
            parts[0].old.as_deref(),
            Some(show(&Some(json!("a")))).as_deref()
        );
        assert_eq!(parts[0].new, show(&Some(json!("b -> c"))));
        // The joined text is what it was: the CLI's output does not change.
        assert_eq!(
            change_lines(&f),
            vec![format!(
                "metadata.note: {} -> {}",
                parts[0].old.clone().unwrap(),
                parts[0].new
            )]
        );
    }
}

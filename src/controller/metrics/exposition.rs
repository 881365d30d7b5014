//! Content negotiation for `/metrics`. prometheus-client writes OpenMetrics text; a
//! scraper that does not ask for it (Prometheus's text parser, `promtool check metrics`,
//! curl) gets the Prometheus text format 0.0.4, where a counter's HELP and TYPE name the
//! `_total` sample, info metrics are gauges named `_info`, and there is no `# EOF`.

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an Accept header asks for OpenMetrics (Prometheus sends it first when it can
/// parse it).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            let q_zero = params.any(|p| p.replace(' ', "") == "q=0");
            media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
        })
    })
}

/// OpenMetrics text to the Prometheus text format 0.0.4.
pub fn to_text_format(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        // HELP (optional) then TYPE open a family; rename both together.
        let (help, type_line) = match line.strip_prefix("# HELP ") {
            Some(help) if lines.peek().is_some_and(|l| l.starts_with("# TYPE ")) => {
                (Some(help), lines.next().unwrap_or_default())
            }
            _ if line.starts_with("# TYPE ") => (None, line),
            _ => {
                out.push_str(line);
                out.push('\n');
                continue;
            }
        };
        let mut parts = type_line["# TYPE ".len()..].splitn(2, ' ');
        let name = parts.next().unwrap_or_default();
        let kind = parts.next().unwrap_or("unknown").trim();
        let (name, kind) = match kind {
            "counter" if !name.ends_with("_total") => (format!("{name}_total"), "counter"),
            "info" => (format!("{name}_info"), "gauge"),
            "counter" | "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
            _ => (name.to_owned(), "untyped"),
        };
        if let Some(help) = help {
            let text = help.split_once(' ').map_or("", |(_, t)| t);
            out.push_str(&format!("# HELP {name} {text}\n"));
        }
        out.push_str(&format!("# TYPE {name} {kind}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_asks_for_openmetrics_and_curl_does_not() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0"
        )));
        assert!(!wants_openmetrics(None));
    }

    #[test]
    fn counters_and_info_are_renamed_for_the_text_format() {
        let om = "# HELP a_actions Plan actions.\n# TYPE a_actions counter\na_actions_total{r=\"x\"} 1\n# HELP a_build Build.\n# TYPE a_build info\na_build_info{v=\"1\"} 1\n# TYPE a_g gauge\n# UNIT a_g seconds\na_g 2\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP a_actions_total Plan actions.\n# TYPE a_actions_total counter\na_actions_total{r=\"x\"} 1\n# HELP a_build_info Build.\n# TYPE a_build_info gauge\na_build_info{v=\"1\"} 1\n# TYPE a_g gauge\na_g 2\n"
        );
    }
}

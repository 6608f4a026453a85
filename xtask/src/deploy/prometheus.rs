//! Checks what Prometheus and Grafana read from `leaktrace daemon`: the alert
//! rules in `deploy/prometheus/` with promtool (`check rules`, then its unit
//! tests in every file there whose name contains `test`), and that the rules,
//! their tests' series and the Grafana dashboard in `deploy/grafana/` name only
//! metrics the daemon serves ([`METRICS`], checked against the daemon's
//! metrics module). A renamed metric would otherwise leave an alert that never
//! fires and a panel that stays empty, silently. Every alert must also have a
//! test where it fires and one where it must not.
//!
//! The rule and test files are read with a line scanner, not a YAML parser:
//! promtool parses them; the scanner only finds the expressions to check, and
//! the checks count what it found against the rules the file defines.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

const RULES_DIR: &str = "deploy/prometheus";
const RULES: &str = "leaktrace-rules.yml";
const DASHBOARD: &str = "deploy/grafana/leaktrace-dashboard.json";
const DAEMON_METRICS: &str = "leaktrace/src/daemon/metrics.rs";

/// The metric names `leaktrace daemon` serves. This mirrors the daemon's
/// metrics module, leaktrace/src/daemon/metrics.rs: rename or add a metric
/// there and here together, and the rules and the dashboard with them. The
/// check compares the `leaktrace_` names with the ones that module quotes, so
/// the two cannot drift apart unnoticed.
const METRICS: &[&str] = &[
    "leaktrace_outstanding_resources",
    "leaktrace_mapped_bytes",
    "leaktrace_tcp_connections",
    "leaktrace_leaking_stacks",
    "leaktrace_process_open_fds",
    "leaktrace_process_max_fds",
    "leaktrace_site_outstanding_resources",
    "leaktrace_site_growth_per_minute",
    "leaktrace_acquisitions_total",
    "leaktrace_releases_total",
    "leaktrace_held_at_exit_total",
    "leaktrace_lost_total",
    "leaktrace_map_entries",
    "leaktrace_map_capacity",
    "leaktrace_traced_processes",
    "leaktrace_last_sample_timestamp_seconds",
    "leaktrace_sample_duration_seconds",
    "leaktrace_kubernetes_errors_total",
    // The daemon's own process, from the prometheus crate's process collector
    // (registered without a namespace, hence no `leaktrace_` prefix).
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

pub(super) fn check(root: &Path) -> Result<()> {
    check_metric_names(root)?;
    let dir = root.join(RULES_DIR);
    promtool(&["check", "rules"], &dir.join(RULES))?;
    for test in test_files(&dir)? {
        promtool(&["test", "rules"], &test)?;
    }
    Ok(())
}

/// The names check alone, which needs no promtool: a unit test runs it too.
fn check_metric_names(root: &Path) -> Result<()> {
    let dir = root.join(RULES_DIR);
    let mut problems = mirror_problems(&read(&root.join(DAEMON_METRICS))?);

    let rules_path = dir.join(RULES);
    let rules = read(&rules_path)?;
    let exprs = yaml_values(&rules, "expr");
    let alerts = yaml_values(&rules, "alert");
    let records = yaml_values(&rules, "record");
    ensure!(
        !exprs.is_empty() && exprs.len() == alerts.len() + records.len(),
        "{}: found {} `expr:` for {} rules; write each rule's expr on its line or as a block scalar",
        rules_path.display(),
        exprs.len(),
        alerts.len() + records.len()
    );
    for expr in &exprs {
        problems.extend(unknown_metrics(expr).map(|m| format!("{}: an alert selects {m}", rules_path.display())));
    }

    for test_path in test_files(&dir)? {
        let test = read(&test_path)?;
        let series = yaml_values(&test, "series");
        ensure!(!series.is_empty(), "{}: no input series", test_path.display());
        for s in &series {
            problems.extend(unknown_metrics(s).map(|m| format!("{}: an input series is {m}", test_path.display())));
        }
        for expr in yaml_values(&test, "expr") {
            problems
                .extend(unknown_metrics(&expr).map(|m| format!("{}: a test expr selects {m}", test_path.display())));
        }
        problems.extend(untested_alerts(&alerts, &test).into_iter().map(|p| format!("{}: {p}", test_path.display())));
    }

    let dashboard_path = root.join(DASHBOARD);
    let dashboard: Value = serde_json::from_str(&read(&dashboard_path)?)
        .with_context(|| format!("{} is not valid JSON", dashboard_path.display()))?;
    let queries = dashboard_queries(&dashboard)
        .with_context(|| format!("{} is not a dashboard this check understands", dashboard_path.display()))?;
    let variables = dashboard_variables(&dashboard);
    for query in &queries {
        problems.extend(
            unknown_metrics(&query.expr).map(|m| format!("{}: {} selects {m}", dashboard_path.display(), query.place)),
        );
        problems.extend(
            grafana_variables(&query.expr)
                .filter(|v| !v.starts_with("__") && !variables.contains(v))
                .map(|v| format!("{}: {} uses ${v}, which is not a variable", dashboard_path.display(), query.place)),
        );
    }

    if !problems.is_empty() {
        bail!(
            "the deployment files do not match the daemon:\n{}\n(METRICS in xtask/src/deploy/prometheus.rs lists \
             what {DAEMON_METRICS} serves)",
            problems.join("\n")
        );
    }
    eprintln!(
        "xtask: {} alert rules, their test series and {} dashboard queries name only the daemon's metrics",
        exprs.len(),
        queries.len()
    );
    Ok(())
}

/// Where [`METRICS`] and the `leaktrace_` names quoted in the daemon's metrics
/// module (its code, not its tests) differ.
fn mirror_problems(module: &str) -> Vec<String> {
    let code = module.split("#[cfg(test)]").next().unwrap_or_default();
    let served: BTreeSet<&str> = code
        .match_indices("\"leaktrace_")
        .filter_map(|(at, _)| {
            let rest = &code[at + 1..];
            let end = rest.find(|c: char| !(c.is_ascii_lowercase() || c == '_'))?;
            rest[end..].starts_with('"').then(|| &rest[..end])
        })
        .collect();
    let listed: BTreeSet<&str> = METRICS.iter().copied().filter(|m| m.starts_with("leaktrace_")).collect();
    let mut problems = Vec::new();
    for m in served.difference(&listed) {
        problems.push(format!("{DAEMON_METRICS} serves {m}, which METRICS lacks"));
    }
    for m in listed.difference(&served) {
        problems.push(format!("METRICS lists {m}, which {DAEMON_METRICS} does not serve"));
    }
    problems
}

/// Runs promtool on `file`, failing with everything it printed.
fn promtool(args: &[&str], file: &Path) -> Result<()> {
    let out = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .context("cannot run promtool; `sudo cargo xtask test` installs it (Debian package prometheus)")?;
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("`promtool {} {}` failed with {}:\n{printed}", args.join(" "), file.display(), out.status);
    }
    eprint!("{printed}");
    Ok(())
}

/// promtool's unit test files: those in `dir` whose name contains `test`.
fn test_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().contains("test")))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no promtool unit tests (a file whose name contains `test`) in {}", dir.display());
    Ok(files)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The names in `expr` that select a metric the daemon does not serve.
fn unknown_metrics(expr: &str) -> impl Iterator<Item = String> {
    metric_names(expr).into_iter().filter(|m| !METRICS.contains(&m.as_str()))
}

/// The alerts `test` leaves without an evaluation where they fire and one
/// where they must not (`exp_alerts: []`). Line-based like [`yaml_values`]:
/// an `alertname:` line is followed by its `exp_alerts:`.
fn untested_alerts(alerts: &[String], test: &str) -> Vec<String> {
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut lines = test.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    while let Some(line) = lines.next() {
        let Some(name) = line.trim_start_matches("- ").strip_prefix("alertname:") else { continue };
        match lines.next().map(|l| l.trim_start_matches("- ")) {
            Some("exp_alerts: []") => quiet.insert(name.trim().to_string()),
            Some("exp_alerts:") => firing.insert(name.trim().to_string()),
            _ => continue,
        };
    }
    let mut problems = Vec::new();
    for alert in alerts.iter().collect::<BTreeSet<_>>() {
        if !firing.contains(alert) {
            problems.push(format!("{alert} has no test where it fires"));
        }
        if !quiet.contains(alert) {
            problems.push(format!("{alert} has no test where it must not fire (`exp_alerts: []`)"));
        }
    }
    problems
}

/// The values of `key:` in a YAML file as the deployment files write them: a
/// plain or quoted scalar on the key's line, or a block scalar (`|`, `|-`,
/// `>`, `>-`) on the more indented lines below it.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut values = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let entry = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let Some(rest) = entry.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else { continue };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let start = i;
            while i < lines.len() && (lines[i].trim().is_empty() || indentation(lines[i]) > indent) {
                i += 1;
            }
            values.push(lines[start..i].iter().map(|l| l.trim()).collect::<Vec<_>>().join("\n").trim().to_string());
        } else {
            values.push(yaml_scalar(rest));
        }
    }
    values
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A one-line YAML scalar: single-quoted (`''` is a quote), double-quoted
/// (backslash escapes) or plain (up to a ` #` comment).
fn yaml_scalar(s: &str) -> String {
    let mut chars = s.chars().peekable();
    match chars.next() {
        Some('\'') => {
            let mut out = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\'' if chars.peek() == Some(&'\'') => {
                        chars.next();
                        out.push('\'');
                    }
                    '\'' => break,
                    c => out.push(c),
                }
            }
            out
        }
        Some('"') => {
            let mut out = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => break,
                    c => out.push(c),
                }
            }
            out
        }
        _ => s.split(" #").next().unwrap_or_default().trim().to_string(),
    }
}

/// Keywords and literals that look like a metric name but are not.
const PROMQL_WORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];
/// Keywords followed by a parenthesized list of label names.
const PROMQL_LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names a PromQL expression selects. A scanner, not a parser: it
/// skips strings, label matchers (`{...}`), ranges (`[...]`), the label lists
/// of `by (...)` and the like, function and aggregation names (a name before
/// `(`, `by` or `without`), keywords, numbers and Grafana variables (`$pod`,
/// `${DS}`).
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_until(&chars, i, '}');
        } else if c == '[' {
            i = skip_until(&chars, i, ']');
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_until(&chars, i, '}');
            } else {
                i = skip_word(&chars, i);
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers, durations (30m, 1h30m) and exponents (1e3).
            while i < chars.len() && (is_word_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            i = skip_word(&chars, i);
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let before_paren = chars.get(next) == Some(&'(');
            // An aggregation can put its grouping first: `sum by (pod) (...)`.
            let next_word: String = chars[next..skip_word(&chars, next)].iter().collect();
            let before_grouping = ["by", "without"].contains(&next_word.to_ascii_lowercase().as_str());
            let lower = word.to_ascii_lowercase();
            if PROMQL_LABEL_LISTS.contains(&lower.as_str()) {
                if before_paren {
                    i = skip_until(&chars, next, ')');
                }
            } else if !before_paren && !before_grouping && !PROMQL_WORDS.contains(&lower.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn skip_word(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && is_word_char(chars[i]) {
        i += 1;
    }
    i
}

/// The index after the string opening at `start` (escapes honoured, except in
/// backquoted raw strings).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The index after the first `close` from `start`, skipping strings.
fn skip_until(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The Grafana variables an expression uses: `$name` and `${name}` (or `${name:format}`).
fn grafana_variables(expr: &str) -> impl Iterator<Item = String> + '_ {
    expr.split('$').skip(1).filter_map(|rest| {
        let name: String = match rest.strip_prefix('{') {
            Some(braced) => braced.chars().take_while(|&c| c != '}' && c != ':').collect(),
            None => rest.chars().take_while(|&c| c.is_ascii_alphanumeric() || c == '_').collect(),
        };
        (!name.is_empty()).then_some(name)
    })
}

/// One PromQL query of the dashboard and where it is, for messages.
struct Query {
    place: String,
    expr: String,
}

/// Every panel target's expression (rows nest panels) and every query
/// variable's query (`label_values(selector, label)` contributes its selector).
fn dashboard_queries(dashboard: &Value) -> Result<Vec<Query>> {
    let mut queries = Vec::new();
    let panels = dashboard["panels"].as_array().context("no `panels` list")?;
    ensure!(!panels.is_empty(), "no panels");
    let mut ids = BTreeSet::new();
    panel_queries(panels, &mut queries, &mut ids)?;
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] != "query" {
            continue;
        }
        let query = match &variable["query"] {
            Value::String(s) => s.as_str(),
            q => q["query"].as_str().unwrap_or_default(),
        };
        let name = variable["name"].as_str().unwrap_or_default();
        ensure!(!query.is_empty(), "variable {name} has no query");
        queries.push(Query { place: format!("variable {name}"), expr: grafana_query_expr(query).to_string() });
    }
    Ok(queries)
}

fn panel_queries(panels: &[Value], queries: &mut Vec<Query>, ids: &mut BTreeSet<u64>) -> Result<()> {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        let id = panel["id"].as_u64().with_context(|| format!("panel {title:?} has no id"))?;
        ensure!(ids.insert(id), "two panels have id {id}");
        ensure!(panel["gridPos"].is_object(), "panel {title:?} has no gridPos");
        if let Some(nested) = panel["panels"].as_array() {
            panel_queries(nested, queries, ids)?;
        }
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.with_context(|| format!("panel {title:?} has no targets"))?;
        for target in targets {
            let expr = target["expr"].as_str().filter(|e| !e.trim().is_empty());
            let expr = expr.with_context(|| format!("a target of panel {title:?} has no expr"))?;
            queries.push(Query { place: format!("panel {title:?}"), expr: expr.to_string() });
        }
    }
    Ok(())
}

/// The PromQL inside a Grafana variable query: the selector of
/// `label_values(selector, label)`, the expression of `query_result(expr)`;
/// nothing for `label_values(label)` and `label_names()`.
fn grafana_query_expr(query: &str) -> &str {
    let query = query.trim();
    if let Some(args) = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')) {
        return args.rsplit_once(',').map_or("", |(selector, _label)| selector);
    }
    if let Some(expr) = query.strip_prefix("query_result(").and_then(|q| q.strip_suffix(')')) {
        return expr;
    }
    if query.starts_with("label_names(") || query.starts_with("metrics(") {
        return "";
    }
    query
}

fn dashboard_variables(dashboard: &Value) -> BTreeSet<String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_metrics_an_expression_selects() {
        let expr = r#"sum by (pod, namespace) (rate(foo_total{a="x}y", b=~"$pod"}[$__rate_interval] offset 5m))
            / on (instance) group_left (node) bar:ratio > 0.8 and Inf < baz # qux
            or vector(1e3) unless sum without (job) (quux) * 60"#;
        assert_eq!(metric_names(expr), ["foo_total", "bar:ratio", "baz", "quux"]);
    }

    #[test]
    fn names_after_grouping_clauses_written_last_are_still_found() {
        assert_eq!(metric_names("sum(a) by (pod) > on() group_left b"), ["a", "b"]);
        assert_eq!(metric_names("topk(20, c{d=\"e\"}) and ignoring(x) f[5m:1m]"), ["c", "f"]);
    }

    #[test]
    fn grafana_variables_are_not_metrics() {
        assert_eq!(metric_names("time() - g{instance=~\"$instance\"} > ${threshold}"), ["g"]);
        let vars: Vec<String> = grafana_variables("a{b=~\"$pod\", c=~\"${ns:regex}\"}[$__rate_interval]").collect();
        assert_eq!(vars, ["pod", "ns", "__rate_interval"]);
    }

    #[test]
    fn label_values_contributes_its_selector() {
        assert_eq!(grafana_query_expr("label_values(m{a=\"b,c\"}, pod)"), "m{a=\"b,c\"}");
        assert_eq!(grafana_query_expr("label_values(pod)"), "");
        assert_eq!(grafana_query_expr("query_result(topk(5, m))"), "topk(5, m)");
    }

    #[test]
    fn reads_plain_quoted_and_block_scalars() {
        let yaml = "groups:\n  - rules:\n      - alert: A\n        expr: a > 1 # note\n      - alert: B\n        expr: |-\n          b\n\n          and c\n        for: 5m\n      - series: 'm{a=\"it''s\"}'\n        values: \"1 2\"\n";
        assert_eq!(yaml_values(yaml, "expr"), ["a > 1", "b\n\nand c"]);
        assert_eq!(yaml_values(yaml, "series"), ["m{a=\"it's\"}"]);
        assert_eq!(yaml_values(yaml, "values"), ["1 2"]);
        assert_eq!(yaml_values(yaml, "alert"), ["A", "B"]);
    }

    #[test]
    fn an_alert_needs_a_firing_and_a_quiet_test() {
        let test = "      - eval_time: 5m\n        alertname: A\n        exp_alerts: []\n      - eval_time: 9m\n        alertname: A\n        exp_alerts:\n          - exp_labels: {}\n      - alertname: B\n        exp_alerts: []\n";
        let alerts = ["A".to_string(), "B".to_string(), "C".to_string()];
        assert_eq!(
            untested_alerts(&alerts, test),
            [
                "B has no test where it fires",
                "C has no test where it fires",
                "C has no test where it must not fire (`exp_alerts: []`)"
            ]
        );
    }

    #[test]
    fn the_deployment_files_name_only_the_daemons_metrics() {
        let root = crate::util::workspace_root().expect("xtask is in the workspace");
        check_metric_names(&root).unwrap();
    }

    #[test]
    fn the_list_must_mirror_the_daemons_module() {
        let module = r#"IntGauge::new("leaktrace_a", "A.")?; Opts::new("leaktrace_new_name", "B."); text("x")
            #[cfg(test)] "leaktrace_in_a_test""#;
        let problems = mirror_problems(module);
        assert!(problems.contains(&format!("{DAEMON_METRICS} serves leaktrace_a, which METRICS lacks")));
        assert!(problems.contains(&format!("{DAEMON_METRICS} serves leaktrace_new_name, which METRICS lacks")));
        assert!(
            problems.contains(&format!("METRICS lists leaktrace_lost_total, which {DAEMON_METRICS} does not serve"))
        );
        assert!(!problems.iter().any(|p| p.contains("in_a_test")));
    }

    #[test]
    fn a_renamed_metric_is_caught() {
        let expr = "deriv(leaktrace_outstanding_resource[30m]) > 1 and leaktrace_mapped_bytes > 0";
        assert_eq!(unknown_metrics(expr).collect::<Vec<_>>(), ["leaktrace_outstanding_resource"]);
    }
}

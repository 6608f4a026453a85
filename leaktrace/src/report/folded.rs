//! Folded stacks (Brendan Gregg's `frame;frame;frame value` lines, read by
//! flamegraph.pl, inferno, speedscope, …) and a flame graph SVG drawn from
//! them with inferno. What is measured and how stacks are named comes from
//! the report; this module only lays it out.

use super::{frame, Report, StackEntry};

/// What a folded line's value counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Weight {
    /// Outstanding resources (fds, connections, mappings).
    Count,
    /// Bytes still mapped: only mmap stacks have any.
    Bytes,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SvgError {
    #[error("cannot render the flame graph: {0}")]
    Render(#[source] std::io::Error),
}

/// Bytes when the report is all memory mappings (their size is what
/// matters), else counts: bytes of mappings and numbers of fds do not add up
/// in one graph.
pub(crate) fn default_weight(report: &Report) -> Weight {
    if !report.stacks.is_empty() && report.stacks.iter().all(|e| e.kind.in_bytes()) {
        Weight::Bytes
    } else {
        Weight::Count
    }
}

/// One line per stack with a nonzero weight, frames outermost first under a
/// root frame `kind:resource`, so that each kind is a tower of its own.
pub(crate) fn folded(report: &Report, weight: Weight) -> String {
    let mut out = String::new();
    for entry in &report.stacks {
        let value = match weight {
            Weight::Count => entry.count,
            Weight::Bytes => entry.bytes,
        };
        if value == 0 {
            continue;
        }
        out.push_str(&sanitize(&format!("{}:{}", entry.kind, entry.resource)));
        for frame in entry.stack.iter().rev() {
            out.push(';');
            out.push_str(&sanitize(&frame::function(frame)));
        }
        out.push_str(&format!(" {value}\n"));
    }
    out
}

/// `;` separates frames and a newline ends the line; demangled names can
/// hold either (`[u8; 8]` in Rust, which reads as well as `[u8: 8]`).
fn sanitize(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// A flame graph of [`folded`] stacks weighed by [`default_weight`].
pub(crate) fn svg(report: &Report, title: &str) -> Result<Vec<u8>, SvgError> {
    let weight = default_weight(report);
    let lines = folded(report, weight);
    if lines.is_empty() {
        // inferno fails on empty input; nothing outstanding is a result, not an error.
        return Ok(empty_svg(title));
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = count_name(&report.stacks, weight).to_string();
    // Colors from hashes of the names: the same report draws the same graph.
    options.deterministic = true;
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.lines(), &mut out).map_err(SvgError::Render)?;
    Ok(out)
}

fn count_name(stacks: &[StackEntry], weight: Weight) -> &'static str {
    match weight {
        Weight::Bytes => "bytes",
        Weight::Count if stacks.iter().any(|e| e.kind.in_bytes()) => "resources",
        Weight::Count => "fds",
    }
}

fn empty_svg(title: &str) -> Vec<u8> {
    format!(
        r##"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="90" viewBox="0 0 1200 90" xmlns="http://www.w3.org/2000/svg">
<rect x="0" y="0" width="100%" height="100%" fill="#ffffff"/>
<text x="600" y="30" text-anchor="middle" font-family="Verdana" font-size="17">{}</text>
<text x="600" y="60" text-anchor="middle" font-family="Verdana" font-size="12">no outstanding resources</text>
</svg>
"##,
        xml_escape(title)
    )
    .into_bytes()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;
    use crate::report::{Frame, Kind, Resource};

    fn frame(symbol: Option<&str>, inlined: bool) -> Frame {
        Frame {
            address: "0x401200".into(),
            symbol: symbol.map(str::to_string),
            module: Some("/path/x".into()),
            file: None,
            line: None,
            offset: None,
            inlined,
            reason: symbol.is_none().then(|| "no symbols in /path/x".to_string()),
        }
    }

    /// The sample's fd stack plus a second one, through an inlined frame, of
    /// 3 sockets.
    fn two_stacks() -> Report {
        let mut r = sample();
        let mut second = r.stacks[0].clone();
        second.resource = Resource::Socket;
        second.count = 3;
        second.stack = vec![
            frame(Some("__socket"), false),
            frame(Some("open_conn"), true),
            frame(Some("main"), false),
            frame(None, false),
        ];
        r.stacks.push(second);
        r
    }

    #[test]
    fn lines_are_outermost_first_under_kind_and_resource() {
        assert_eq!(
            folded(&two_stacks(), Weight::Count),
            "fd:file;[unknown: address outside every code mapping];load_config;__libc_open64 100\n\
             fd:socket;[unknown: no symbols in /path/x];main;open_conn;__socket 3\n"
        );
    }

    #[test]
    fn zero_weights_are_left_out() {
        let mut r = two_stacks();
        r.stacks[1].count = 0;
        assert_eq!(folded(&r, Weight::Count).lines().count(), 1);
        // fds hold no bytes.
        assert_eq!(folded(&r, Weight::Bytes), "");
    }

    #[test]
    fn bytes_weigh_mappings_only_when_all_stacks_are_mappings() {
        let mut r = two_stacks();
        assert_eq!(default_weight(&r), Weight::Count);
        r.stacks[1].kind = Kind::Mmap;
        r.stacks[1].resource = Resource::Anon;
        r.stacks[1].bytes = 8192;
        assert_eq!(default_weight(&r), Weight::Count);
        assert!(folded(&r, Weight::Count)
            .contains("mmap:anon;[unknown: no symbols in /path/x];main;open_conn;__socket 3\n"));
        r.stacks.remove(0);
        assert_eq!(default_weight(&r), Weight::Bytes);
        assert_eq!(
            folded(&r, Weight::Bytes),
            "mmap:anon;[unknown: no symbols in /path/x];main;open_conn;__socket 8192\n"
        );
        r.stacks.clear();
        assert_eq!(default_weight(&r), Weight::Count);
    }

    #[test]
    fn separators_inside_names_are_replaced() {
        let mut r = sample();
        r.stacks[0].stack.truncate(1);
        r.stacks[0].stack[0].symbol = Some("<[u8; 8] as Debug>::fmt\nx".into());
        assert_eq!(folded(&r, Weight::Count), "fd:file;<[u8: 8] as Debug>::fmt x 100\n");
    }

    #[test]
    fn svg_names_the_functions() {
        let bytes = svg(&two_stacks(), "leaktrace: x").expect("svg");
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.contains("<svg"), "{text}");
        for name in ["leaktrace: x", "fd:file", "fd:socket", "load_config", "__libc_open64", "open_conn", "103 fds"] {
            assert!(text.contains(name), "{name} missing");
        }
        // Deterministic colors: the same report, the same bytes.
        assert_eq!(svg(&two_stacks(), "leaktrace: x").expect("svg"), text.into_bytes());
    }

    #[test]
    fn an_empty_report_is_a_graph_saying_so() {
        let mut r = sample();
        r.stacks.clear();
        let text = String::from_utf8(svg(&r, "a < b").expect("svg")).expect("utf-8");
        assert!(
            text.contains("<svg") && text.contains("no outstanding resources") && text.contains("a &lt; b"),
            "{text}"
        );
    }
}

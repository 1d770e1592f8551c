//! The book's code is the examples' code: every Rust snippet in `docs/*.md` must be a verbatim
//! copy of an anchored region of a source file that compiles and runs as a test.
//!
//! In a chapter, a snippet is written as
//!
//! ````text
//! <!-- include: examples/pingpong.rs#define_port -->
//! ```rust
//! ...the region's text...
//! ```
//! ````
//!
//! and in the source file the region is marked with `// ANCHOR: define_port` and
//! `// ANCHOR_END: define_port` lines. The region's text is the lines between the two, without
//! any anchor lines (regions may nest or overlap), and with the indentation common to its
//! non-blank lines removed. The code block must equal it line for line, whitespace included.
//!
//! A ```` ```rust ```` block without a marker right above it is an error too: no snippet is kept
//! in sync by hand. The one other way a chapter's code is kept honest is to compile the whole
//! chapter as a crate's doctests (`#[doc = include_str!("../../../docs/x.md")]`); such a chapter
//! says so in a `<!-- doctested: path/to/lib.rs -->` line, and this test checks that the file
//! named there really includes it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const INCLUDE_OPEN: &str = "<!-- include:";
const INCLUDE_CLOSE: &str = "-->";
const RUST_FENCE: &str = "```rust";
const FENCE: &str = "```";

/// A source file's text by its workspace-relative path, or why it cannot be read.
type Sources<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

/// One `<!-- include: path#anchor -->` marker with the code block under it.
#[derive(Debug)]
struct Snippet {
    /// 1-based line of the marker in the document.
    line: usize,
    path: String,
    anchor: String,
    code: Vec<String>,
}

/// The snippets of one document, or the problems that kept it from being parsed.
fn parse_doc(doc: &str, text: &str) -> (Vec<Snippet>, Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut snippets = Vec::new();
    let mut problems = Vec::new();
    let mut i = 0;
    let mut in_other_block = false;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        if in_other_block {
            in_other_block = !trimmed.starts_with(FENCE);
            i += 1;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix(INCLUDE_OPEN) {
            let at = i + 1;
            let Some(target) = rest.strip_suffix(INCLUDE_CLOSE).map(str::trim) else {
                problems.push(format!("{doc}:{at}: include marker not closed with `-->`"));
                i += 1;
                continue;
            };
            let Some((path, anchor)) = target.split_once('#') else {
                problems
                    .push(format!("{doc}:{at}: include marker `{target}` must be `path#anchor`"));
                i += 1;
                continue;
            };
            if lines.get(i + 1).copied() != Some(RUST_FENCE) {
                problems.push(format!(
                    "{doc}:{at}: include marker `{target}` must be followed directly by a \
                     ```rust line"
                ));
                i += 1;
                continue;
            }
            let body_start = i + 2;
            let Some(len) = lines[body_start..].iter().position(|l| *l == FENCE) else {
                problems.push(format!(
                    "{doc}:{at}: the code block of `{target}` is never closed with ```"
                ));
                break;
            };
            snippets.push(Snippet {
                line: at,
                path: path.trim().to_owned(),
                anchor: anchor.trim().to_owned(),
                code: lines[body_start..body_start + len].iter().map(|l| (*l).to_owned()).collect(),
            });
            i = body_start + len + 1;
            continue;
        }
        if let Some(info) = trimmed.strip_prefix(FENCE) {
            if info.trim_start().starts_with("rust") {
                problems.push(format!(
                    "{doc}:{}: a ```rust block without an include marker above it; put the code \
                     in an example between `// ANCHOR: name` / `// ANCHOR_END: name` and write \
                     `<!-- include: path#name -->` above the block",
                    i + 1
                ));
            }
            in_other_block = true;
        }
        i += 1;
    }
    (snippets, problems)
}

fn anchor_name<'l>(line: &'l str, tag: &str) -> Option<&'l str> {
    line.trim()
        .strip_prefix("//")
        .map(str::trim_start)
        .and_then(|l| l.strip_prefix(tag))
        .map(str::trim)
}

fn is_anchor_line(line: &str) -> bool {
    anchor_name(line, "ANCHOR:").is_some() || anchor_name(line, "ANCHOR_END:").is_some()
}

/// The text of region `anchor` of `source`: anchor lines dropped, common indentation removed.
fn region(source: &str, anchor: &str) -> Result<Vec<String>, String> {
    let lines: Vec<&str> = source.lines().collect();
    let find = |tag: &str| -> Result<usize, String> {
        let mut hits = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| anchor_name(l, tag) == Some(anchor))
            .map(|(n, _)| n);
        match (hits.next(), hits.next()) {
            (Some(n), None) => Ok(n),
            (None, _) => Err(format!("has no `// {tag} {anchor}` line")),
            (Some(a), Some(b)) => {
                Err(format!("has `// {tag} {anchor}` twice (lines {} and {})", a + 1, b + 1))
            }
        }
    };
    let start = find("ANCHOR:")?;
    let end = find("ANCHOR_END:")?;
    if end < start {
        return Err(format!(
            "closes anchor `{anchor}` (line {}) before opening it (line {})",
            end + 1,
            start + 1
        ));
    }
    let body: Vec<&str> =
        lines[start + 1..end].iter().copied().filter(|l| !is_anchor_line(l)).collect();
    if body.iter().all(|l| l.trim().is_empty()) {
        return Err(format!("anchor `{anchor}` encloses no code"));
    }
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    Ok(body
        .iter()
        .map(|l| if l.trim().is_empty() { String::new() } else { l[indent..].to_owned() })
        .collect())
}

/// Every problem with the snippets of document `doc` (whose text is `text`).
fn check_doc(doc: &str, text: &str, sources: &Sources<'_>) -> (usize, Vec<String>) {
    let (snippets, mut problems) = parse_doc(doc, text);
    for s in &snippets {
        let here = format!("{doc}:{}: `{}#{}`", s.line, s.path, s.anchor);
        let expected = match sources(&s.path).and_then(|src| region(&src, &s.anchor)) {
            Ok(lines) => lines,
            Err(e) => {
                problems.push(format!("{here}: {} {e}", s.path));
                continue;
            }
        };
        if s.code == expected {
            continue;
        }
        let at = s
            .code
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(s.code.len().min(expected.len()));
        let show =
            |v: &[String]| v.get(at).map_or("<end of block>".to_owned(), |l| format!("{l:?}"));
        problems.push(format!(
            "{here}: the code block differs from the anchored region of {} at snippet line {}\n    \
             in the doc:    {}\n    in the source: {}\n  \
             the block should read:\n```rust\n{}\n```",
            s.path,
            at + 1,
            show(&s.code),
            show(&expected),
            expected.join("\n"),
        ));
    }
    (snippets.len(), problems)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the examples package sits inside the workspace")
        .to_path_buf()
}

fn read_source(root: &Path, rel: &str) -> Result<String, String> {
    let path = Path::new(rel);
    if path.is_absolute() || path.components().any(|c| c.as_os_str() == "..") {
        return Err("must be a path inside the workspace".to_owned());
    }
    fs::read_to_string(root.join(path)).map_err(|e| format!("cannot be read: {e}"))
}

/// The source file a chapter says compiles it as doctests (`<!-- doctested: path -->`).
fn doctested_by(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("<!-- doctested:"))
        .and_then(|rest| rest.strip_suffix(INCLUDE_CLOSE))
        .map(str::trim)
}

#[test]
fn doc_snippets_equal_the_anchored_regions_of_the_examples() {
    let root = workspace_root();
    let docs = root.join("docs");
    let mut chapters: Vec<PathBuf> = fs::read_dir(&docs)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", docs.display()))
        .map(|entry| entry.expect("a readable docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    chapters.sort();
    // The README's snippets are held to the same rule.
    chapters.insert(0, root.join("README.md"));

    let mut counts = BTreeMap::new();
    let mut problems = Vec::new();
    for chapter in &chapters {
        let file = chapter.file_name().expect("a file").to_string_lossy().into_owned();
        let name = if file == "README.md" { file } else { format!("docs/{file}") };
        let text = fs::read_to_string(chapter)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", chapter.display()));
        if let Some(by) = doctested_by(&text) {
            match read_source(&root, by) {
                Ok(src) if src.contains(&format!("include_str!(\"../../../{name}\")")) => continue,
                Ok(_) => problems.push(format!(
                    "{name}: says it is doctested by {by}, which does not include it"
                )),
                Err(e) => problems.push(format!("{name}: says it is doctested by {by}, which {e}")),
            }
        }
        let (n, p) = check_doc(&name, &text, &|rel| read_source(&root, rel));
        counts.insert(name, n);
        problems.extend(p);
    }
    assert!(
        problems.is_empty(),
        "{} doc snippet problem(s):\n\n{}\n",
        problems.len(),
        problems.join("\n\n")
    );
    // The check is not vacuous: the component-model chapter quotes the examples.
    let quoted = counts.get("docs/component-model.md").copied().unwrap_or(0);
    assert!(
        quoted >= 10,
        "docs/component-model.md quotes only {quoted} snippets; were the markers lost?"
    );
}

// ---------------------------------------------------------------------------------------------
// The checker itself: it must notice every kind of drift.
// ---------------------------------------------------------------------------------------------

const SOURCE: &str = "\
fn main() {
    // ANCHOR: body
    let x = 1;

    // ANCHOR: inner
    if x > 0 {
        println!(\"{x}\");
    }
    // ANCHOR_END: inner
    // ANCHOR_END: body
}
";

fn check_against_source(doc: &str) -> (usize, Vec<String>) {
    check_doc("docs/t.md", doc, &|path| match path {
        "src/t.rs" => Ok(SOURCE.to_owned()),
        other => Err(format!("cannot be read: no {other}")),
    })
}

fn block(marker: &str, code: &str) -> String {
    format!("# Title\n\n{marker}\n```rust\n{code}\n```\n\nText.\n")
}

#[test]
fn checker_accepts_an_exact_dedented_copy_without_nested_anchor_lines() {
    let doc =
        block(
            "<!-- include: src/t.rs#body -->",
            "let x = 1;\n\nif x > 0 {\n    println!(\"{x}\");\n}",
        ) + &block("<!-- include: src/t.rs#inner -->", "if x > 0 {\n    println!(\"{x}\");\n}");
    let (n, problems) = check_against_source(&doc);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(n, 2);
}

#[test]
fn checker_reports_a_changed_line_with_file_anchor_and_position() {
    let doc = block("<!-- include: src/t.rs#inner -->", "if x > 1 {\n    println!(\"{x}\");\n}");
    let (_, problems) = check_against_source(&doc);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert!(p.starts_with("docs/t.md:3: `src/t.rs#inner`"), "{p}");
    assert!(p.contains("at snippet line 1"), "{p}");
    assert!(p.contains("\"if x > 1 {\"") && p.contains("\"if x > 0 {\""), "{p}");
}

#[test]
fn checker_reports_missing_extra_and_reindented_lines() {
    for code in [
        "if x > 0 {\n    println!(\"{x}\");",      // a line missing
        "if x > 0 {\n    println!(\"{x}\");\n}\n", // an extra blank line
        "    if x > 0 {\n        println!(\"{x}\");\n    }", // indentation kept
        "if x > 0 {\n    println!(\"{x}\"); \n}",  // trailing space
    ] {
        let doc = block("<!-- include: src/t.rs#inner -->", code);
        let (_, problems) = check_against_source(&doc);
        assert_eq!(problems.len(), 1, "not caught: {code:?}");
    }
}

#[test]
fn checker_reports_unknown_files_and_anchors() {
    let doc = block("<!-- include: src/t.rs#nope -->", "x")
        + &block("<!-- include: src/gone.rs#body -->", "x");
    let (_, problems) = check_against_source(&doc);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("has no `// ANCHOR: nope` line"), "{problems:?}");
    assert!(problems[1].contains("src/gone.rs cannot be read"), "{problems:?}");
}

#[test]
fn checker_reports_malformed_markers_and_unmarked_rust_blocks() {
    let cases = [
        "<!-- include: src/t.rs -->\n```rust\nx\n```\n",
        "<!-- include: src/t.rs#body\n```rust\nx\n```\n",
        "<!-- include: src/t.rs#body -->\n\n```rust\nx\n```\n",
        "<!-- include: src/t.rs#body -->\n```rust\nlet x = 1;\n",
        "Some code:\n\n```rust\nlet x = 1;\n```\n",
    ];
    for doc in cases {
        let (_, problems) = check_against_source(doc);
        assert!(!problems.is_empty(), "not caught:\n{doc}");
    }
    // Other languages need no marker, and fences inside them are not mistaken for markers.
    let other = "```text\n<!-- include: src/t.rs#nope -->\n```\n\n```sh\ncargo test\n```\n";
    assert_eq!(check_against_source(other), (0, Vec::new()));
}

#[test]
fn region_rejects_duplicate_and_reversed_anchors() {
    let dup = "// ANCHOR: a\nx\n// ANCHOR_END: a\n// ANCHOR: a\ny\n// ANCHOR_END: a\n";
    assert!(region(dup, "a").unwrap_err().contains("twice"));
    let reversed = "// ANCHOR_END: a\nx\n// ANCHOR: a\n";
    assert!(region(reversed, "a").unwrap_err().contains("before opening"));
}

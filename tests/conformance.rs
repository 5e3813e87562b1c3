//! Keeps `docs/conformance.md` true: every cell of its feature × provider table must cite a
//! test, and every cited golden case directory and test function must exist.
//!
//! A citation is a backticked path: `tests/fixtures/<provider>/<case>` (a case directory
//! with files, of the column's provider), `tests/<file>.rs::<fn>` or `src/<file>.rs::<fn>`
//! (a `#[test]` function in that file), or `tests/e2e/<file>.py::<fn>` (a pytest function).

use std::fs;
use std::path::{Path, PathBuf};

use llm_gateway::provider::registry::{WireApi, PROVIDERS};

/// The provider columns, in order, and the fixture directory each may cite: one column
/// for the OpenAI-compatible family (OpenAI and the presets share its translator), then
/// one per other provider of the registry, in its order.
fn columns() -> Vec<(&'static str, &'static str)> {
    std::iter::once(("openai-compatible", "openai"))
        .chain(
            PROVIDERS
                .iter()
                .filter(|p| p.wire != WireApi::OpenAiChat)
                .map(|p| (p.name, p.name)),
        )
        .collect()
}

/// Rows the matrix must have (a row matches when its feature cell contains the text).
const REQUIRED_ROWS: &[&str] = &[
    "text",
    "system / developer",
    "multi-turn",
    "tools (function definitions)",
    "tool_choice",
    "parallel tool calls",
    "tool results",
    "images",
    "stop",
    "max tokens",
    "temperature / top_p",
    "json_object",
    "json_schema",
    "reasoning_effort",
    "reasoning returned",
    "signatures round trip",
    "cached tokens",
    "usage (prompt",
    "finish reasons",
    "errors by status",
    "streaming text",
    "streaming tool calls",
    "streaming reasoning",
    "streaming usage",
    "streaming errors",
    "`n` > 1",
    "logprobs",
    "`drop_params: true`",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cells of a table line (`| a | b |` → `["a", "b"]`).
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The backticked spans of a cell that are citations.
fn citations(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("tests/") || s.starts_with("src/"))
        .map(str::to_string)
        .collect()
}

/// True when `source` has a `#[test]` function called `name`: the attribute is one of the
/// attribute or doc-comment lines right above the function.
fn has_rust_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    let signature = format!("fn {name}(");
    lines.iter().enumerate().any(|(i, line)| {
        let line = line.trim_start();
        let is_fn = line.starts_with(&signature)
            || line
                .strip_prefix("pub ")
                .is_some_and(|l| l.starts_with(&signature));
        is_fn
            && lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim())
                .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
                .any(|l| l == "#[test]")
    })
}

/// True when `source` has a pytest function called `name`.
fn has_python_test(source: &str, name: &str) -> bool {
    name.starts_with("test_")
        && source.lines().any(|l| {
            let l = l.trim_start_matches("async ");
            l.starts_with(&format!("def {name}("))
        })
}

/// Checks one citation in the column of `fixture_provider`; returns what is wrong.
fn check_citation(citation: &str, fixture_provider: &str) -> Option<String> {
    if let Some((file, name)) = citation.split_once("::") {
        let path = root().join(file);
        let Ok(source) = fs::read_to_string(&path) else {
            return Some(format!("`{citation}`: {file} does not exist"));
        };
        let found = if file.ends_with(".rs") {
            has_rust_test(&source, name)
        } else if file.ends_with(".py") {
            has_python_test(&source, name)
        } else {
            false
        };
        return (!found).then(|| format!("`{citation}`: no test `{name}` in {file}"));
    }
    // An endpoint's cases live under its own folder (`tests/fixtures/embeddings/<provider>/`).
    let Some(rest) = citation
        .strip_prefix("tests/fixtures/embeddings/")
        .or_else(|| citation.strip_prefix("tests/fixtures/"))
    else {
        return Some(format!(
            "`{citation}`: cite a case directory under tests/fixtures/ or a test as <file>::<fn>"
        ));
    };
    let provider = rest.split('/').next().unwrap_or_default();
    if provider != fixture_provider {
        return Some(format!(
            "`{citation}`: a {provider} case cited in the {fixture_provider} column"
        ));
    }
    let dir = root().join(citation);
    let has_files = fs::read_dir(&dir)
        .map(|entries| entries.flatten().any(|e| e.path().is_file()))
        .unwrap_or(false);
    (!has_files).then(|| format!("`{citation}`: no such case directory"))
}

/// The data rows of the matrix (feature cell first), after checking the header.
fn matrix(doc: &str) -> Result<Vec<Vec<String>>, String> {
    // The first table of the page; the presets table follows it.
    let mut lines = doc
        .lines()
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'));
    let header = lines.next().ok_or("docs/conformance.md has no table")?;
    let expected: Vec<String> = std::iter::once("feature")
        .chain(columns().iter().map(|(c, _)| *c))
        .map(str::to_string)
        .collect();
    if cells(header) != expected {
        return Err(format!(
            "the table header is {:?}, expected {expected:?}",
            cells(header)
        ));
    }
    let separator = lines.next().unwrap_or_default();
    if !cells(separator).iter().all(|c| c.starts_with("---")) {
        return Err("the table has no separator row under its header".to_string());
    }
    Ok(lines.map(cells).collect())
}

/// The rows of the tables after the first whose header is the matrix's provider columns
/// (the endpoint dimension: one row per endpoint, one table of features per endpoint).
fn endpoint_tables(doc: &str) -> Result<Vec<Vec<String>>, String> {
    let columns: Vec<String> = columns().iter().map(|(c, _)| c.to_string()).collect();
    let lines: Vec<&str> = doc.lines().collect();
    let mut rows = Vec::new();
    let mut tables = 0;
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].trim_start().starts_with('|') {
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && lines[i].trim_start().starts_with('|') {
            i += 1;
        }
        tables += 1;
        let header = cells(lines[start]);
        if tables == 1 || header.get(1..) != Some(&columns[..]) {
            continue;
        }
        rows.extend(lines[start + 2..i].iter().map(|l| cells(l)));
    }
    if !rows
        .iter()
        .any(|r| r.first().is_some_and(|f| f.contains("/v1/embeddings")))
    {
        return Err("docs/conformance.md has no endpoint row for `POST /v1/embeddings`".into());
    }
    Ok(rows)
}

/// Every cell cites something that exists, and every required feature has a row.
#[test]
fn conformance_matrix_cites_existing_tests() {
    let path = root().join("docs").join("conformance.md");
    let doc = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rows = matrix(&doc).unwrap_or_else(|e| panic!("{e}"));
    let columns = columns();
    let mut failures = Vec::new();
    // The endpoint tables further down have the same provider columns.
    let endpoint_rows = endpoint_tables(&doc).unwrap_or_else(|e| panic!("{e}"));
    for row in rows.iter().chain(&endpoint_rows) {
        let feature = row.first().cloned().unwrap_or_default();
        if row.len() != columns.len() + 1 {
            failures.push(format!(
                "row `{feature}` has {} cells, expected {} (a column per provider: {:?})",
                row.len(),
                columns.len() + 1,
                columns.iter().map(|c| c.0).collect::<Vec<_>>()
            ));
            continue;
        }
        for ((column, fixture_provider), cell) in columns.iter().zip(&row[1..]) {
            let cited = citations(cell);
            if cited.is_empty() {
                failures.push(format!("row `{feature}`, column {column}: cites no test"));
            }
            for c in cited {
                if let Some(problem) = check_citation(&c, fixture_provider) {
                    failures.push(format!("row `{feature}`, column {column}: {problem}"));
                }
            }
        }
    }
    for required in REQUIRED_ROWS {
        if !rows
            .iter()
            .any(|r| r.first().is_some_and(|f| f.contains(required)))
        {
            failures.push(format!("no row for `{required}`"));
        }
    }
    assert!(
        failures.is_empty(),
        "docs/conformance.md is out of date:\n{}",
        failures.join("\n")
    );
}

/// The presets table lists every OpenAI-compatible preset of the registry with its
/// prefix, default base, key variable, quirks and where its prices come from.
#[test]
fn presets_table_matches_the_registry() {
    let doc = fs::read_to_string(root().join("docs/conformance.md")).unwrap();
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(cells)
        .filter(|r| r.len() == 6)
        .collect();
    let mut failures = Vec::new();
    for spec in PROVIDERS
        .iter()
        .filter(|p| p.wire == WireApi::OpenAiChat && p.name != "openai")
    {
        let Some(row) = rows.iter().find(|r| r[0] == spec.display_name) else {
            failures.push(format!("no presets row for {}", spec.display_name));
            continue;
        };
        let base = spec
            .default_api_base
            .map_or("none: `api_base` required".to_string(), |b| {
                format!("`{b}`")
            });
        if row[2] != base {
            failures.push(format!("{}: base {} != {base}", spec.display_name, row[2]));
        }
        if !row[1].contains(&format!("`{}/`", spec.prefixes[0])) {
            failures.push(format!("{}: prefix missing", spec.display_name));
        }
        if let Some(env) = spec.key_env {
            if !row[3].contains(&format!("`{env}`")) {
                failures.push(format!("{}: key variable {env} missing", spec.display_name));
            }
        }
        for q in spec
            .quirks
            .rejected_params
            .iter()
            .chain(&spec.quirks.reasoning_field)
            .chain(&spec.quirks.stream_usage_in)
        {
            if !row[4].contains(&format!("`{q}`")) {
                failures.push(format!("{}: quirk `{q}` missing", spec.display_name));
            }
        }
        if !row[5].starts_with(spec.prices.describe()) {
            failures.push(format!(
                "{}: prices `{}` != {}",
                spec.display_name,
                row[5],
                spec.prices.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "docs/conformance.md presets table:\n{}",
        failures.join("\n")
    );
}

/// The checker itself: it finds real tests and rejects what does not exist.
#[test]
fn checker_rejects_missing_citations() {
    assert_eq!(
        check_citation("tests/fixtures/gemini/plain_text", "gemini"),
        None
    );
    assert!(check_citation("tests/fixtures/gemini/plain_text", "anthropic").is_some());
    assert!(check_citation("tests/fixtures/gemini/no_such_case", "gemini").is_some());
    assert_eq!(
        check_citation(
            "tests/conformance.rs::checker_rejects_missing_citations",
            "gemini"
        ),
        None
    );
    // A helper is not a test.
    assert!(check_citation("tests/conformance.rs::has_rust_test", "gemini").is_some());
    assert!(check_citation("tests/gemini.rs::no_such_test", "gemini").is_some());
    assert!(check_citation("tests/e2e/test_gemini.py::answer", "gemini").is_some());
    assert_eq!(
        check_citation(
            "tests/e2e/test_gemini.py::test_text_through_the_sdk",
            "gemini"
        ),
        None
    );
    assert!(check_citation("docs/x.md", "gemini").is_some());
    assert_eq!(
        citations("a `tests/x.rs::f` and `code` and `src/y.rs::g`"),
        vec!["tests/x.rs::f", "src/y.rs::g"]
    );
    assert!(Path::new(&root().join("docs/conformance.md")).is_file());
}

/// The endpoint table (`## Endpoints`): every cell cites tests that exist.
#[test]
fn endpoint_table_cites_existing_tests() {
    let path = root().join("docs").join("conformance.md");
    let doc = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = doc
        .split_once("\n### `POST /v1/messages`\n")
        .map(|(_, rest)| rest)
        .expect("docs/conformance.md has no `### `POST /v1/messages`` section");
    let rows: Vec<Vec<String>> = section
        .lines()
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .skip(2)
        .map(cells)
        .collect();
    assert!(rows.len() >= 10, "the endpoint table lost rows");
    let mut failures = Vec::new();
    for row in &rows {
        assert_eq!(row.len(), 3, "{row:?}");
        for cell in &row[1..] {
            let cited = citations(cell);
            if cited.is_empty() {
                failures.push(format!("row `{}`: a cell cites no test", row[0]));
            }
            for c in cited {
                if let Some(problem) = check_citation(&c, "messages") {
                    failures.push(format!("row `{}`: {problem}", row[0]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

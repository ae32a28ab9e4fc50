//! How `warden test` reports suite outcomes: lines like `cargo test`, or
//! JUnit XML for CI systems.

use super::suite::Outcome;
use std::fmt::Write;

/// The outcomes of one suite file.
pub struct SuiteRun {
    /// The file, as given.
    pub file: String,
    /// Its cases' outcomes, or why the file could not run.
    pub outcomes: Result<Vec<Outcome>, String>,
}

/// (passed, failed) over all runs; a suite that could not run counts as one failure.
pub fn totals(runs: &[SuiteRun]) -> (usize, usize) {
    let mut passed = 0;
    let mut failed = 0;
    for run in runs {
        match &run.outcomes {
            Ok(outcomes) => {
                for o in outcomes {
                    if o.failure.is_none() {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
            Err(_) => failed += 1,
        }
    }
    (passed, failed)
}

/// `cargo test`-style text: one line per case, failures in full, a summary line.
pub fn text(runs: &[SuiteRun]) -> String {
    let mut out = String::new();
    let (passed, failed) = totals(runs);
    let _ = writeln!(
        out,
        "\nrunning {} policy checks from {} suites",
        passed + failed,
        runs.len()
    );
    let mut failures = Vec::new();
    for run in runs {
        match &run.outcomes {
            Ok(outcomes) => {
                for o in outcomes {
                    let status = if o.failure.is_none() { "ok" } else { "FAILED" };
                    let _ = writeln!(out, "test {} ... {status}", o.name);
                    if let Some(why) = &o.failure {
                        failures.push((o.name.clone(), why.clone()));
                    }
                }
            }
            Err(why) => {
                let _ = writeln!(out, "test {} ... FAILED", run.file);
                failures.push((run.file.clone(), why.clone()));
            }
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailures:\n");
        for (name, why) in &failures {
            let _ = writeln!(out, "---- {name} ----\n{why}\n");
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    let _ = writeln!(
        out,
        "\ntest result: {verdict}. {passed} passed; {failed} failed"
    );
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one `<testsuite>` per file, one `<testcase>` per checked action.
pub fn junit(runs: &[SuiteRun]) -> String {
    let (passed, failed) = totals(runs);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"warden policy tests\" tests=\"{}\" failures=\"{failed}\">",
        passed + failed
    );
    for run in runs {
        let file = xml(&run.file);
        match &run.outcomes {
            Ok(outcomes) => {
                let failures = outcomes.iter().filter(|o| o.failure.is_some()).count();
                let _ = writeln!(
                    out,
                    "  <testsuite name=\"{file}\" tests=\"{}\" failures=\"{failures}\">",
                    outcomes.len()
                );
                for o in outcomes {
                    let name = xml(&o.name);
                    match &o.failure {
                        None => {
                            let _ = writeln!(
                                out,
                                "    <testcase classname=\"{file}\" name=\"{name}\"/>"
                            );
                        }
                        Some(why) => {
                            let why = xml(why);
                            let _ = writeln!(
                                out,
                                "    <testcase classname=\"{file}\" name=\"{name}\"><failure message=\"{why}\">{why}</failure></testcase>"
                            );
                        }
                    }
                }
            }
            Err(why) => {
                let why = xml(why);
                let _ = writeln!(
                    out,
                    "  <testsuite name=\"{file}\" tests=\"1\" failures=\"1\">"
                );
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{file}\" name=\"load\"><failure message=\"{why}\">{why}</failure></testcase>"
                );
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs() -> Vec<SuiteRun> {
        vec![
            SuiteRun {
                file: "a.json".into(),
                outcomes: Ok(vec![
                    Outcome {
                        name: "a.json: owner reads [read]".into(),
                        failure: None,
                    },
                    Outcome {
                        name: "a.json: <odd> & \"quoted\" [write]".into(),
                        failure: Some("expected allow, got deny".into()),
                    },
                ]),
            },
            SuiteRun {
                file: "b.json".into(),
                outcomes: Err("b.json: expected value at line 1".into()),
            },
        ]
    }

    #[test]
    fn text_reads_like_cargo_test() {
        let out = text(&runs());
        assert!(out.contains("test a.json: owner reads [read] ... ok"));
        assert!(
            out.contains("---- a.json: <odd> & \"quoted\" [write] ----\nexpected allow, got deny")
        );
        assert!(out
            .trim_end()
            .ends_with("test result: FAILED. 1 passed; 2 failed"));
    }

    #[test]
    fn junit_is_escaped_and_counts_failures() {
        let out = junit(&runs());
        assert!(
            out.contains("<testsuites name=\"warden policy tests\" tests=\"3\" failures=\"2\">")
        );
        assert!(out.contains("&lt;odd&gt; &amp; &quot;quoted&quot;"));
        assert!(!out.contains("<odd>"));
        assert_eq!(out.matches("<testsuite ").count(), 2);
    }
}

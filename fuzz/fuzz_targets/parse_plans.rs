//! Arbitrary bytes through the plan-file readers: they may refuse input with
//! an error, never panic; and a parsed plan must survive an edit round.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use llmclis::docs::issues::IssuesDoc;
use llmclis::docs::plans::PlansDoc;
use llmclis::docs::research::ResearchDoc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz.md");
    if let Ok(doc) = PlansDoc::parse(text, path) {
        let ids: Vec<String> = doc.tasks().map(|t| t.id.clone()).collect();
        if let Some(id) = ids.first() {
            let done = doc.complete_task(id, "2026-01-01T00:00:00+00:00", "fuzz", &[]).expect("a parsed task can be completed");
            let again = PlansDoc::parse(&done, path).expect("an edit keeps the file readable");
            assert!(again.task(id).is_some_and(|t| t.checked), "the task is ticked");
        }
        let _ = doc.log_done("entry");
    }
    let _ = IssuesDoc::parse(text, path);
    let _ = ResearchDoc::parse(text, path);
});

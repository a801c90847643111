//! Fitting a step's context into the window of the model that answers.
//! Pure: the material and a measure of the rendered prompt go in, the cut
//! material and what was cut come out.
//!
//! What goes first, when something must (never the task's own text):
//! 1. memories, the least relevant first (the project summary last);
//! 2. dependencies' results, down to their summaries (or a short excerpt),
//!    the longest first;
//! 3. those results left out, the longest first (titles stay);
//! 4. notes, the oldest first;
//! 5. the plans.md section, shortened, then left out;
//! 6. the parent's description and summary, shortened, then left out;
//! 7. dependencies themselves, the first listed first.

use serde::{Deserialize, Serialize};

use super::context::Vars;

/// Of each model's window, a tenth is kept free: the token estimate is
/// within about ±30% of real tokenizers, and a prompt that overflows costs
/// a call.
pub fn prompt_budget(window: u64, output: u64) -> u64 {
    window.saturating_sub(output).saturating_sub(window / 10)
}

/// What a dependency's result becomes when it has no summary.
const EXCERPT_BYTES: usize = 300;
/// Where a left-out result stood: the agent can still look it up.
const LEFT_OUT: &str = "[left out to fit the window; `llmclis task show` has it]";
/// A section shortened below this is left out instead.
const MIN_SECTION_BYTES: usize = 200;

/// A part of a prompt that may be cut, in the order it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Memory,
    DependencyResults,
    Notes,
    PlanSection,
    Parent,
    Dependencies,
}

/// One kind of material cut from a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    pub part: Part,
    /// In words: "3 of 5 memories".
    pub what: String,
    /// About how many tokens it saved.
    pub tokens: u64,
}

/// The context as fitted to one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fitted {
    pub model: String,
    pub window: u64,
    /// What the prompt may take: the window less the answer's room and a
    /// tenth kept free.
    pub budget: u64,
    /// The prompt's estimated tokens as sent.
    pub tokens: u64,
    pub cut: Vec<Cut>,
}

impl Fitted {
    /// One line for notes and `task show`, or None when nothing was cut.
    pub fn describe(&self) -> Option<String> {
        if self.cut.is_empty() {
            return None;
        }
        Some(format!(
            "context cut to fit {}'s {}-token window (~{} prompt tokens): {}",
            self.model,
            self.window,
            self.tokens,
            self.cut
                .iter()
                .map(|c| c.what.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }
}

/// Cuts `vars` until `measure(vars)` is within `budget`, in the stated
/// order. `summaries[i]` is dependency i's summary, when it has one.
/// Returns the measure after cutting and what was cut; the measure can
/// still be over the budget when even the task alone is (the caller
/// decides whether that is too much for the model).
pub fn fit(
    vars: &mut Vars,
    summaries: &[Option<String>],
    budget: u64,
    measure: &dyn Fn(&Vars) -> u64,
) -> (u64, Vec<Cut>) {
    let mut tokens = measure(vars);
    let mut cuts = Vec::new();
    if tokens <= budget {
        return (tokens, cuts);
    }
    let mut stages = Stages::new(vars, summaries);
    // Bytes still to cut, by the estimate (a token is four bytes of
    // UTF-8); the measure is taken again whenever the estimate says done,
    // since per-item framing makes the estimate approximate.
    let mut excess = (tokens - budget) * 4;
    while let Some(saved) = stages.cut_one(vars, excess) {
        excess = excess.saturating_sub(saved as u64);
        if excess == 0 {
            tokens = measure(vars);
            if tokens <= budget {
                break;
            }
            excess = (tokens - budget) * 4;
        }
    }
    tokens = measure(vars);
    stages.report(vars, &mut cuts);
    (tokens, cuts)
}

/// The prompt's material with everything that may be cut taken out: what
/// the task needs at the least.
pub fn minimal(vars: &Vars) -> Vars {
    Vars {
        task: vars.task.clone(),
        parent: vars.parent.as_ref().map(|p| super::context::ParentView {
            title: p.title.clone(),
            description: String::new(),
            summary: None,
        }),
        dependencies: Vec::new(),
        plan_section: None,
        notes: Vec::new(),
        memory: Vec::new(),
    }
}

/// Where the cutting is, and how much of each part it has cut.
struct Stages<'s> {
    stage: usize,
    summaries: &'s [Option<String>],
    /// The dependencies' order by result length, longest first.
    by_length: Vec<usize>,
    next: usize,
    memories: usize,
    memory_saved: usize,
    notes: usize,
    notes_saved: usize,
    summarized: usize,
    summarized_saved: usize,
    left_out: usize,
    left_out_saved: usize,
    plan_from: Option<usize>,
    plan_saved: usize,
    parent_from: Option<usize>,
    parent_saved: usize,
    deps: usize,
    deps_dropped: usize,
    deps_saved: usize,
}

impl<'s> Stages<'s> {
    fn new(vars: &Vars, summaries: &'s [Option<String>]) -> Stages<'s> {
        let mut by_length: Vec<usize> = (0..vars.dependencies.len()).collect();
        by_length.sort_by_key(|&i| std::cmp::Reverse(vars.dependencies[i].result.len()));
        Stages {
            stage: 0,
            summaries,
            by_length,
            next: 0,
            memories: vars.memory.len(),
            memory_saved: 0,
            notes: vars.notes.len(),
            notes_saved: 0,
            summarized: 0,
            summarized_saved: 0,
            left_out: 0,
            left_out_saved: 0,
            plan_from: vars.plan_section.as_ref().map(String::len),
            plan_saved: 0,
            parent_from: vars
                .parent
                .as_ref()
                .map(|p| p.description.len() + p.summary.as_ref().map_or(0, String::len)),
            parent_saved: 0,
            deps: vars.dependencies.len(),
            deps_dropped: 0,
            deps_saved: 0,
        }
    }

    /// Cuts one piece (`excess` bytes are still to go); the bytes it saved,
    /// or None when nothing is left to cut.
    fn cut_one(&mut self, v: &mut Vars, excess: u64) -> Option<usize> {
        loop {
            let saved = match self.stage {
                0 => v.memory.pop().map(|m| {
                    let s = m.len() + 4;
                    self.memory_saved += s;
                    s
                }),
                1 => self.summarize_next(v),
                2 => self.leave_out_next(v),
                3 => (!v.notes.is_empty()).then(|| {
                    let n = v.notes.remove(0);
                    let s = n.text.len() + n.agent.len() + n.created_at.len() + 6;
                    self.notes_saved += s;
                    s
                }),
                4 => {
                    let saved = v
                        .plan_section
                        .as_mut()
                        .map(|section| shorten(section, excess));
                    if v.plan_section.as_ref().is_some_and(String::is_empty) {
                        v.plan_section = None;
                    }
                    self.plan_saved += saved.unwrap_or(0);
                    saved
                }
                5 => self.cut_parent(v, excess),
                6 => (!v.dependencies.is_empty()).then(|| {
                    let d = v.dependencies.remove(0);
                    let s = d.title.len() + d.result.len() + 8;
                    self.deps_dropped += 1;
                    self.deps_saved += s;
                    s
                }),
                _ => return None,
            };
            match saved {
                Some(s) if s > 0 => return Some(s),
                _ => {
                    self.stage += 1;
                    self.next = 0;
                }
            }
        }
    }

    fn summarize_next(&mut self, v: &mut Vars) -> Option<usize> {
        while let Some(&i) = self.by_length.get(self.next) {
            self.next += 1;
            let d = &mut v.dependencies[i];
            let shorter = match self.summaries.get(i).cloned().flatten() {
                Some(s) if s.len() < d.result.len() => s,
                _ if d.result.len() > EXCERPT_BYTES + 8 => excerpt(&d.result, EXCERPT_BYTES),
                _ => continue,
            };
            let s = d.result.len() - shorter.len();
            d.result = shorter;
            self.summarized += 1;
            self.summarized_saved += s;
            return Some(s);
        }
        None
    }

    fn leave_out_next(&mut self, v: &mut Vars) -> Option<usize> {
        while let Some(&i) = self.by_length.get(self.next) {
            self.next += 1;
            let d = &mut v.dependencies[i];
            if d.result.len() <= LEFT_OUT.len() {
                continue;
            }
            let s = d.result.len() - LEFT_OUT.len();
            d.result = LEFT_OUT.to_string();
            self.left_out += 1;
            self.left_out_saved += s;
            return Some(s);
        }
        None
    }

    fn cut_parent(&mut self, v: &mut Vars, excess: u64) -> Option<usize> {
        let p = v.parent.as_mut()?;
        // The template shows the summary when there is one, else the
        // description: the shown one is cut first.
        let s = match p.summary.as_mut() {
            Some(summary) => {
                let s = shorten(summary, excess);
                if summary.is_empty() {
                    p.summary = None;
                }
                s
            }
            None => shorten(&mut p.description, excess),
        };
        self.parent_saved += s;
        Some(s)
    }

    fn report(&self, v: &Vars, cuts: &mut Vec<Cut>) {
        let tokens = |bytes: usize| (bytes as u64).div_ceil(4);
        let dropped = self.memories - v.memory.len();
        if dropped > 0 {
            cuts.push(Cut {
                part: Part::Memory,
                what: format!(
                    "{dropped} of {} memories, the least relevant first",
                    self.memories
                ),
                tokens: tokens(self.memory_saved),
            });
        }
        if self.summarized > 0 || self.left_out > 0 {
            let mut what = Vec::new();
            if self.summarized > 0 {
                what.push(format!(
                    "{} of {} dependencies' results cut to their summaries",
                    self.summarized, self.deps
                ));
            }
            if self.left_out > 0 {
                what.push(format!(
                    "{} of their results left out",
                    self.left_out.min(self.deps)
                ));
            }
            cuts.push(Cut {
                part: Part::DependencyResults,
                what: what.join(", "),
                tokens: tokens(self.summarized_saved + self.left_out_saved),
            });
        }
        let notes = self.notes - v.notes.len();
        if notes > 0 {
            cuts.push(Cut {
                part: Part::Notes,
                what: format!("{notes} of {} notes, the oldest first", self.notes),
                tokens: tokens(self.notes_saved),
            });
        }
        if let Some(from) = self.plan_from.filter(|_| self.plan_saved > 0) {
            cuts.push(Cut {
                part: Part::PlanSection,
                what: match &v.plan_section {
                    Some(s) => format!(
                        "the plans.md section shortened from {from} to {} bytes",
                        s.len()
                    ),
                    None => "the plans.md section left out".into(),
                },
                tokens: tokens(self.plan_saved),
            });
        }
        if let Some(from) = self.parent_from.filter(|_| self.parent_saved > 0) {
            let left = v.parent.as_ref().map_or(0, |p| {
                p.description.len() + p.summary.as_ref().map_or(0, String::len)
            });
            cuts.push(Cut {
                part: Part::Parent,
                what: if left == 0 {
                    "the parent's description left out (its title stays)".into()
                } else {
                    format!("the parent's description shortened from {from} to {left} bytes")
                },
                tokens: tokens(self.parent_saved),
            });
        }
        if self.deps_dropped > 0 {
            cuts.push(Cut {
                part: Part::Dependencies,
                what: format!(
                    "{} of {} dependencies left out, the first listed first",
                    self.deps_dropped, self.deps
                ),
                tokens: tokens(self.deps_saved),
            });
        }
    }
}

/// Shortens `text` by about `by` bytes (at a character boundary, with a
/// mark), or empties it when less than `MIN_SECTION_BYTES` would stay;
/// the bytes saved.
fn shorten(text: &mut String, by: u64) -> usize {
    let before = text.len();
    let keep = before.saturating_sub(by as usize + 8);
    if keep < MIN_SECTION_BYTES {
        text.clear();
        return before;
    }
    let at = text.floor_char_boundary(keep);
    text.truncate(at);
    text.push_str(" […]");
    before.saturating_sub(text.len())
}

/// The first `max` bytes of `text` (at a character boundary), marked.
fn excerpt(text: &str, max: usize) -> String {
    let at = text.floor_char_boundary(max);
    format!("{} […]", &text[..at])
}

#[cfg(test)]
mod tests {
    use super::super::context::{DepView, NoteView, ParentView, TaskView};
    use super::*;

    fn vars(deps: usize, result: usize, notes: usize, memories: usize) -> Vars {
        Vars {
            task: TaskView {
                id: 1,
                external_ref: Some("S1.1".into()),
                title: "The task itself".into(),
                description: "Its description, never cut. ".repeat(10),
                priority: 0,
                tags: vec![],
            },
            parent: Some(ParentView {
                title: "Stage 1".into(),
                description: "p".repeat(1_000),
                summary: None,
            }),
            dependencies: (0..deps)
                .map(|i| DepView {
                    id: 100 + i as i64,
                    title: format!("dependency {i}"),
                    result: "r".repeat(result + i),
                })
                .collect(),
            plan_section: Some("s".repeat(2_000)),
            notes: (0..notes)
                .map(|i| NoteView {
                    created_at: format!("2026-12-0{i}"),
                    agent: "me".into(),
                    text: format!("note {i} ") + &"n".repeat(200),
                })
                .collect(),
            memory: (0..memories)
                .map(|i| format!("memory {i} ") + &"m".repeat(300))
                .collect(),
        }
    }

    /// The template's measure, roughly: every byte of every field.
    fn measure(v: &Vars) -> u64 {
        (serde_json::to_string(v).unwrap().len() as u64).div_ceil(4) + 8
    }

    #[test]
    fn nothing_is_cut_when_it_fits() {
        let mut v = vars(3, 100, 2, 2);
        let before = v.clone();
        let (tokens, cut) = fit(&mut v, &[], 100_000, &measure);
        assert!(cut.is_empty());
        assert_eq!(tokens, measure(&before));
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::to_value(&before).unwrap()
        );
    }

    #[test]
    fn memories_go_first_and_the_least_relevant_of_them_first() {
        let mut v = vars(2, 100, 2, 5);
        let full = measure(&v);
        // Room for all but about two memories.
        let (tokens, cut) = fit(&mut v, &[], full - 150, &measure);
        assert!(tokens <= full - 150);
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert_eq!(cut[0].part, Part::Memory);
        assert_eq!(v.memory.len(), 3);
        assert!(
            v.memory[0].starts_with("memory 0"),
            "the most relevant stays"
        );
        assert_eq!(v.dependencies[0].result.len(), 100);
    }

    #[test]
    fn results_go_to_their_summaries_before_anything_else_of_theirs() {
        let mut v = vars(4, 2_000, 3, 0);
        let summaries = vec![Some("summary zero".to_string()), None, None, None];
        let full = measure(&v);
        let (tokens, cut) = fit(&mut v, &summaries, full - 1_000, &measure);
        assert!(tokens <= full - 1_000);
        assert_eq!(cut[0].part, Part::DependencyResults, "{cut:?}");
        assert_eq!(v.notes.len(), 3, "notes come after results");
        // The longest (the last) went first, to an excerpt; the shortest
        // (the first, which has a summary) was not reached.
        assert!(v.dependencies[3].result.ends_with("[…]"));
        assert_eq!(v.dependencies[0].result.len(), 2_000);
        let mut v = vars(4, 2_000, 3, 0);
        let (_, cut) = fit(&mut v, &summaries, full - 1_700, &measure);
        assert_eq!(v.dependencies[0].result, "summary zero");
        assert_eq!(v.notes.len(), 3, "{cut:?}");
    }

    #[test]
    fn the_task_is_never_cut_and_everything_else_can_be() {
        let mut v = vars(200, 1_500, 10, 5);
        let task = serde_json::to_value(&v.task).unwrap();
        let (tokens, cut) = fit(&mut v, &[], 10, &measure);
        assert!(tokens > 10, "the task alone is more than 10 tokens");
        assert_eq!(serde_json::to_value(&v.task).unwrap(), task);
        assert!(v.memory.is_empty() && v.notes.is_empty() && v.dependencies.is_empty());
        assert!(v.plan_section.is_none());
        assert_eq!(v.parent.as_ref().unwrap().description, "");
        assert_eq!(tokens, measure(&minimal(&vars(200, 1_500, 10, 5))));
        let parts: Vec<Part> = cut.iter().map(|c| c.part).collect();
        use Part::*;
        assert_eq!(
            parts,
            [
                Memory,
                DependencyResults,
                Notes,
                PlanSection,
                Parent,
                Dependencies
            ]
        );
    }

    #[test]
    fn a_budget_between_the_stages_stops_where_it_fits() {
        for budget in (200..12_000).step_by(997) {
            let mut v = vars(20, 800, 5, 3);
            let min = measure(&minimal(&v));
            let (tokens, _) = fit(&mut v, &[], budget, &measure);
            assert!(tokens <= budget.max(min), "budget {budget}: {tokens}");
            assert!(tokens >= budget.min(min) / 2, "no more than needed is cut");
        }
    }

    #[test]
    fn the_description_names_the_model_and_what_went() {
        let f = Fitted {
            model: "smollm2-135m".into(),
            window: 2048,
            budget: 1331,
            tokens: 1200,
            cut: vec![Cut {
                part: Part::Memory,
                what: "2 of 4 memories, the least relevant first".into(),
                tokens: 150,
            }],
        };
        assert_eq!(
            f.describe().unwrap(),
            "context cut to fit smollm2-135m's 2048-token window (~1200 prompt tokens): 2 of 4 memories, the least relevant first"
        );
        assert_eq!(prompt_budget(2048, 512), 1332);
    }
}

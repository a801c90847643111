//! Role prompts: `prompts/<name>.md` templates with YAML front matter
//! (temperature, max_tokens, response schema), rendered by minijinja. The
//! user's copies in the config dir win over the ones compiled in; a broken
//! one is an error naming its file and line, found when the run starts, not
//! halfway through it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The template voters render; it belongs to no role.
pub const VOTER: &str = "voter";
/// `plans parse`: a requirements document into stages and tasks.
pub const PRD: &str = "prd";

/// Every template the orchestrator renders: one per role, and the voter's.
pub fn names() -> impl Iterator<Item = &'static str> {
    crate::registry::ROLES.into_iter().chain([VOTER, PRD])
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    response_schema: Option<serde_json::Value>,
}

/// One template's settings, from its front matter.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub name: String,
    /// Where it came from: the user's file, or `<built-in>/prompts/NAME.md`.
    pub source: PathBuf,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u64>,
    /// Ask the model for JSON matching this schema.
    pub response_schema: Option<serde_json::Value>,
    /// Lines taken by the front matter, to report template errors at the
    /// file's own line numbers.
    body_line: usize,
}

/// The loaded templates.
pub struct Prompts {
    env: Environment<'static>,
    prompts: BTreeMap<String, Prompt>,
}

impl std::fmt::Debug for Prompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompts")
            .field("prompts", &self.prompts.keys())
            .finish()
    }
}

fn builtin(name: &str) -> Option<&'static str> {
    crate::defaults::INSTALLED_FILES
        .iter()
        .find(|(path, _)| path.strip_prefix("prompts/") == Some(&format!("{name}.md")))
        .map(|(_, text)| *text)
}

/// Splits `---\nYAML\n---\nbody` into the YAML, the body and the body's first line.
fn split_front_matter(text: &str) -> Option<(&str, &str, usize)> {
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            let yaml = &rest[..offset];
            let body = &rest[offset + line.len()..];
            let body_line = 2 + yaml.lines().count() + 1;
            return Some((yaml, body, body_line));
        }
        offset += line.len();
    }
    None
}

impl Prompts {
    /// The templates in `config_dir/prompts/`, each falling back to the
    /// built-in one when the user has no copy.
    pub fn load(config_dir: &Path) -> Result<Prompts> {
        let mut env = Environment::new();
        // A misspelt variable renders empty rather than failing a run; the
        // `if` blocks in the shipped prompts rely on it.
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_trim_blocks(true);
        env.set_keep_trailing_newline(true);
        let mut prompts = BTreeMap::new();
        for name in names() {
            let path = config_dir.join("prompts").join(format!("{name}.md"));
            let (text, source) = match std::fs::read_to_string(&path) {
                Ok(t) => (t, path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                    builtin(name).expect("every name is shipped").to_string(),
                    PathBuf::from(format!("<built-in>/prompts/{name}.md")),
                ),
                Err(e) => return Err(Error::io(&path, e)),
            };
            let (yaml, body, body_line) = split_front_matter(&text).ok_or_else(|| Error::Document {
                path: source.clone(),
                line: 1,
                message: "a prompt starts with front matter between two `---` lines (role, temperature, max_tokens); see the shipped prompts".into(),
            })?;
            let front: FrontMatter = if yaml.trim().is_empty() {
                FrontMatter::default()
            } else {
                serde_saphyr::from_str(yaml).map_err(|e| Error::Document {
                    path: source.clone(),
                    line: 1 + e.location().map_or(1, |l| l.line() as usize),
                    message: format!(
                        "front matter: {}",
                        e.without_snippet().to_string().lines().next().unwrap_or("")
                    ),
                })?
            };
            if let Some(role) = &front.role
                && !crate::registry::ROLES.contains(&role.as_str())
            {
                return Err(Error::Document {
                    path: source,
                    line: 2,
                    message: format!(
                        "unknown role {role:?}: expected one of {}",
                        crate::registry::ROLES.join(", ")
                    ),
                });
            }
            let prompt = Prompt {
                name: name.to_string(),
                source: source.clone(),
                temperature: front.temperature,
                max_tokens: front.max_tokens,
                response_schema: front.response_schema,
                body_line,
            };
            env.add_template_owned(name.to_string(), body.to_string())
                .map_err(|e| template_error(&prompt, &e))?;
            prompts.insert(name.to_string(), prompt);
        }
        Ok(Prompts { env, prompts })
    }

    /// The built-in templates only.
    pub fn builtin() -> Prompts {
        Prompts::load(Path::new("/nonexistent/llmclis-builtin"))
            .expect("the shipped prompts are valid")
    }

    pub fn get(&self, name: &str) -> &Prompt {
        &self.prompts[name]
    }

    /// Renders a template with `vars` (any serializable value).
    pub fn render(&self, name: &str, vars: impl serde::Serialize) -> Result<String> {
        let prompt = self.get(name);
        let template = self.env.get_template(name).expect("every name is loaded");
        let text = template
            .render(minijinja::Value::from_serialize(&vars))
            .map_err(|e| template_error(prompt, &e))?;
        Ok(text.trim().to_string() + "\n")
    }
}

fn template_error(prompt: &Prompt, e: &minijinja::Error) -> Error {
    Error::Document {
        path: prompt.source.clone(),
        line: prompt.body_line + e.line().unwrap_or(1) - 1,
        message: format!(
            "template: {}; fix the file or delete it to use the built-in prompt",
            e.detail().unwrap_or(&e.kind().to_string())
        ),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // fixtures
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shipped_prompts_render_with_their_settings() {
        let p = Prompts::builtin();
        // The registry's role temperature applies: the shipped role prompts
        // set none; the voters' set theirs on purpose (they have no role).
        assert_eq!(p.get("critic").temperature, None);
        assert_eq!(p.get("voter").temperature, Some(0.7));
        assert!(p.get("critic").response_schema.is_some());
        assert!(p.get("coder").response_schema.is_none());
        let text = p
            .render(
                "coder",
                json!({
                    "task": {"id": 7, "title": "Fix the parser", "description": "It drops tabs."},
                    "critique": "- tabs still vanish",
                    "notes": [{"created_at": "2026-11-21T00:00:00Z", "agent": "ann", "text": "see KM-3"}],
                }),
            )
            .unwrap();
        assert!(text.contains("## Task 7: Fix the parser"), "{text}");
        assert!(text.contains("tabs still vanish"));
        assert!(text.contains("ann: see KM-3"));
        assert!(!text.contains("Handoff"), "empty sections are left out");
        let with_ref = p
            .render(
                "coder",
                json!({"task": {"id": 7, "external_ref": "S1.2", "title": "T"}}),
            )
            .unwrap();
        assert!(with_ref.contains("## Task S1.2: T"));
    }

    #[test]
    fn a_users_copy_wins_and_its_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("prompts")).unwrap();
        let coder = dir.path().join("prompts/coder.md");
        std::fs::write(&coder, "---\ntemperature: 0.5\n---\nDo {{ task.title }}.\n").unwrap();
        let p = Prompts::load(dir.path()).unwrap();
        assert_eq!(p.get("coder").temperature, Some(0.5));
        assert_eq!(
            p.render("coder", json!({"task": {"title": "it"}})).unwrap(),
            "Do it.\n"
        );
        std::fs::write(&coder, "---\nrole: coder\n---\nline one\n{% if x %}\n").unwrap();
        let e = Prompts::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("prompts/coder.md:5:"), "{e}");
        std::fs::write(&coder, "no front matter\n").unwrap();
        let e = Prompts::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("coder.md:1: a prompt starts with front matter"),
            "{e}"
        );
    }
}

//! The files llmclis ships inside its binary and installs into the user's
//! config directory: the model registry and the role prompts. The user's
//! copies win once installed.

/// (path relative to the config dir, shipped content).
pub const INSTALLED_FILES: &[(&str, &str)] = &[
    (
        "model_registry.yaml",
        include_str!("../model_registry.yaml"),
    ),
    ("prompts/planner.md", include_str!("../prompts/planner.md")),
    ("prompts/coder.md", include_str!("../prompts/coder.md")),
    ("prompts/tester.md", include_str!("../prompts/tester.md")),
    ("prompts/critic.md", include_str!("../prompts/critic.md")),
    (
        "prompts/researcher.md",
        include_str!("../prompts/researcher.md"),
    ),
    ("prompts/writer.md", include_str!("../prompts/writer.md")),
    (
        "prompts/summarizer.md",
        include_str!("../prompts/summarizer.md"),
    ),
    ("prompts/voter.md", include_str!("../prompts/voter.md")),
    ("prompts/prd.md", include_str!("../prompts/prd.md")),
];

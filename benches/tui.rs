//! The task board with 10,000 tasks: time to the first frame (open the
//! database, load the project, lay out and draw the board) and the time to
//! draw one frame, into ratatui's TestBackend at 160×48.
//!
//!     cargo bench --bench tui

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use llmclis::store::{NewTask, Status, Store};
use llmclis::tui::app::{App, Msg};
use llmclis::tui::keys::KeyMap;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn database(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tui.db");
    let mut s = Store::open(&path).unwrap();
    let p = s.create_project("big", "", None, "bench").unwrap();
    s.batch(|s| {
        for i in 0..10_000i64 {
            let t = s.create_task(
                NewTask {
                    project_id: p.id,
                    title: format!("Task {i}: refactor module {} of the parser", i % 97),
                    priority: Some(i % 4),
                    depends_on: if i > 10 && i % 3 == 0 {
                        vec![i - 5]
                    } else {
                        vec![]
                    },
                    ..Default::default()
                },
                "bench",
            )?;
            let status = match i % 4 {
                0 => Status::Done,
                1 => Status::InProgress,
                2 => Status::Blocked,
                _ => Status::Pending,
            };
            if status != Status::Pending {
                s.mark_task_status(t.id, status, "bench", serde_json::json!({}))?;
            }
        }
        Ok(())
    })
    .unwrap();
    path
}

fn load(path: &std::path::Path) -> App {
    let s = Store::open(path).unwrap();
    let project = s.project(1).unwrap();
    let mut app = App::new(KeyMap::default(), true);
    app.on_msg(Msg::Board {
        tasks: s.tasks(Some(1), None).unwrap(),
        counts: s.status_counts(Some(1)).unwrap(),
        project,
    });
    app
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = database(dir.path());
    let mut g = c.benchmark_group("tui");
    g.sample_size(20);
    g.bench_function("first_frame_10k_tasks", |b| {
        b.iter(|| {
            let app = load(&path);
            let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
            term.draw(|f| llmclis::tui::ui::draw(f, &app)).unwrap();
            black_box(term.backend().buffer().area);
        })
    });
    let app = load(&path);
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    g.sample_size(100);
    g.bench_function("frame_10k_tasks", |b| {
        b.iter(|| {
            term.draw(|f| llmclis::tui::ui::draw(f, &app)).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The planner and retention are pure: no AWS, async, clock, terminal or IO.
//! A cheap guard against the easiest way to break that by accident.

use crate::support::root;

#[test]
fn the_pure_core_imports_no_io_clock_async_or_aws() {
    let forbidden = [
        "aws_",
        "tokio",
        "async ",
        ".await",
        "Utc::now",
        "SystemTime",
        "Instant::now",
        "std::io",
        "std::fs",
        "std::env",
        "std::process",
        "println!",
        "eprintln!",
        "indicatif",
        "IsTerminal",
    ];
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root().join("src/planner"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 8, "the planner's files: {files:?}");
    files.push(root().join("src/policy/duration.rs"));
    files.push(root().join("src/policy/duration/parse.rs"));
    for path in files {
        let file = path.display();
        let text = std::fs::read_to_string(&path).unwrap();
        for word in forbidden {
            assert!(!text.contains(word), "{file} mentions {word}");
        }
    }
}

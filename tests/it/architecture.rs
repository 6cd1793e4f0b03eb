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
    for file in [
        "src/planner.rs",
        "src/retention.rs",
        "src/policy/duration.rs",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for word in forbidden {
            assert!(!text.contains(word), "{file} mentions {word}");
        }
    }
}

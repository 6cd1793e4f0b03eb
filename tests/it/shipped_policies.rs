//! Every example policy shipped in `policies/` parses and validates, alone
//! and as a set.

use crate::support::{backupctl, root, stdout};

#[test]
fn shipped_policies_are_valid() {
    let dir = root().join("policies");
    let set = backupctl::policy::load_dir(&dir).expect("shipped policies load");
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    assert_eq!(set.policies.len(), files, "one policy per file");
    for p in &set.policies {
        let text = std::fs::read_to_string(&p.file).unwrap();
        let (again, _) = backupctl::policy::parse_policy(&p.file, &text).expect("parses alone");
        assert_eq!(&again, p);
    }
    let out = backupctl(&["validate"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains(&format!("{files} policies valid")));
}

//! `backupctl import-config`: policy files from an old tool's
//! configuration (see [`crate::import`]), printed or written to a directory.

use crate::cli::{ImportArgs, ImportFrom};
use crate::error::{Error, ExitCode};
use crate::import::{from_backupviatag, from_molibackup, PolicyFile};
use crate::output::Printer;

pub fn run(args: &ImportArgs, printer: &Printer) -> Result<ExitCode, Error> {
    let files = match &args.from {
        ImportFrom::Molibackup { file } => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::Import(vec![format!(
                    "cannot read {}: {e}; give the path of molibackup's YAML file (its -c)",
                    file.display()
                )])
            })?;
            from_molibackup(file, &text)
        }
        ImportFrom::BackupViaTag { every, args } => from_backupviatag(args, every),
    }
    .map_err(Error::Import)?;
    match &args.out {
        None => {
            let mut s = String::new();
            for f in &files {
                s += &format!("# ---- {} ----\n{}\n", f.file_name, f.text);
            }
            printer.result(&s);
        }
        Some(dir) => write_all(dir, &files, printer)?,
    }
    Ok(ExitCode::Success)
}

/// Writes every file, or none when one already exists: a conversion never
/// replaces a policy someone wrote.
fn write_all(dir: &std::path::Path, files: &[PolicyFile], printer: &Printer) -> Result<(), Error> {
    let taken: Vec<String> = files
        .iter()
        .map(|f| dir.join(&f.file_name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !taken.is_empty() {
        return Err(Error::Import(vec![format!(
            "{} already exist{}: nothing was written; move them away or choose another --out",
            taken.join(", "),
            if taken.len() == 1 { "s" } else { "" }
        )]));
    }
    std::fs::create_dir_all(dir).map_err(|error| Error::Write {
        path: dir.to_path_buf(),
        error,
    })?;
    for f in files {
        let path = dir.join(&f.file_name);
        std::fs::write(&path, &f.text).map_err(|error| Error::Write {
            path: path.clone(),
            error,
        })?;
        printer.note(&format!("wrote {}", path.display()));
    }
    Ok(())
}

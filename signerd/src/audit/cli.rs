//! `signerd audit verify` and `signerd audit tail`: reading the audit trail without signerd.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use signerd_token::KeyId;

use super::line::{Line, LineKind};
use super::verify::{key_id_of_public_key_file, verify, AuditFile, TrustedKey};

/// Exit code of a chain that is not as signerd wrote it.
const EXIT_BAD: u8 = 1;
/// Exit code of a usage error (as clap's own).
const EXIT_USAGE: u8 = 2;

/// The `signerd audit` commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check audit files (hash chain and checkpoint signatures) and name the first bad line.
    /// Exit 0: intact; 1: tampered or damaged; 2: usage error.
    Verify(VerifyArgs),
    /// Print an audit file as text (or its JSON lines); with -f follow it as it grows and rotates.
    Tail(TailArgs),
}

/// `signerd audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Audit files: the live file and the rotated ones, in any order.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The audit key's ID (`signerd key list`, label admin:audit@signerd): every checkpoint
    /// must be signed by it. The ID is the hash of the public key, so it pins the key.
    #[arg(long, value_name = "KEY_ID", conflicts_with = "public_key")]
    key_id: Option<String>,
    /// The audit key's public key (PEM or DER SubjectPublicKeyInfo) instead of its ID.
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
}

/// `signerd audit tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The live audit file (rotation is followed).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Keep printing lines as they are written.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Print the lines as written (JSON) rather than as text.
    #[arg(long)]
    json: bool,
    /// Start with the last N lines (0: all).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    lines: usize,
}

/// Runs an audit command.
pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify(args) => run_verify(&args),
        AuditCommand::Tail(args) => run_tail(&args),
    }
}

fn run_verify(args: &VerifyArgs) -> ExitCode {
    let usage = |e: String| {
        eprintln!("signerd audit verify: {e}");
        ExitCode::from(EXIT_USAGE)
    };
    let trusted = match (&args.key_id, &args.public_key) {
        (Some(id), _) => match id.trim().parse::<KeyId>() {
            Ok(id) => TrustedKey::KeyId(id),
            Err(_) => {
                return usage(format!(
                    "--key-id {id:?} is not a key ID (64 hex digits, as `signerd key list` shows)"
                ))
            }
        },
        (None, Some(path)) => match key_id_of_public_key_file(path) {
            Ok(id) => TrustedKey::KeyId(id),
            Err(e) => return usage(e),
        },
        (None, None) => TrustedKey::FromFile,
    };
    let mut files = Vec::new();
    for path in &args.files {
        match AuditFile::read(path) {
            Ok(f) => files.push(f),
            Err(e) => return usage(e),
        }
    }
    match verify(&files, &trusted) {
        Ok(summary) => {
            println!(
                "ok: {} line(s) in {} file(s), {} checkpoint(s) verified",
                summary.lines,
                files.len(),
                summary.checkpoints
            );
            let key = summary.key_id.as_deref().unwrap_or("-");
            if summary.key_trusted {
                println!("audit key {key}: the key you gave");
            } else {
                println!(
                    "audit key {key}: read from the file, NOT independently trusted; pin it with --key-id (signerd key list) to rule out a rewrite with another key"
                );
            }
            for note in &summary.notes {
                println!("note: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(bad) => {
            println!("BAD {bad}");
            ExitCode::from(EXIT_BAD)
        }
    }
}

/// Caller-supplied text, shown so it cannot fake a line or drive the terminal.
fn shown(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    {
        text.to_owned()
    } else {
        format!("{text:?}")
    }
}

/// One line as text.
pub fn human(raw: &[u8]) -> String {
    let Ok(line) = serde_json::from_slice::<Line>(raw) else {
        return format!(
            "? unreadable line: {}",
            shown(&String::from_utf8_lossy(raw))
        );
    };
    let mut out = format!("{} #{}", line.time, line.seq);
    let field = |out: &mut String, name: &str, value: &Option<String>| {
        if let Some(v) = value {
            out.push_str(&format!(" {name}={}", shown(v)));
        }
    };
    match line.kind {
        Some(LineKind::Record) => {
            field(&mut out, "port", &line.port);
            field(&mut out, "method", &line.method);
            field(&mut out, "outcome", &line.outcome);
            field(&mut out, "by", &line.identity);
            field(&mut out, "key", &line.key_id);
            field(&mut out, "gun", &line.gun);
            field(&mut out, "role", &line.role);
            field(&mut out, "alg", &line.algorithm);
            field(&mut out, "sha256", &line.content_sha256);
            field(&mut out, "rule", &line.rule);
            if let Some(us) = line.duration_us {
                out.push_str(&format!(" {us}us"));
            }
            field(&mut out, "error", &line.error);
        }
        Some(LineKind::Checkpoint) => {
            out.push_str(" checkpoint");
            field(
                &mut out,
                "head",
                &Some(line.prev.chars().take(16).collect()),
            );
            field(&mut out, "audit_key", &line.key_id);
        }
        Some(LineKind::Start) => {
            out.push_str(" start");
            field(&mut out, "continues", &line.previous_file);
        }
        None => out.push_str(" (no type)"),
    }
    out
}

fn print_lines(bytes: &[u8], json: bool, out: &mut impl Write) -> std::io::Result<()> {
    for raw in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if json {
            out.write_all(raw)?;
            out.write_all(b"\n")?;
        } else {
            writeln!(out, "{}", human(raw))?;
        }
    }
    out.flush()
}

/// How often `tail -f` looks for new lines.
const POLL: Duration = Duration::from_millis(250);

fn run_tail(args: &TailArgs) -> ExitCode {
    match tail(args) {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reading any more (a closed pipe) is a normal end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signerd audit tail: {}: {e}", args.file.display());
            ExitCode::from(EXIT_BAD)
        }
    }
}

fn open(path: &Path) -> std::io::Result<(File, u64)> {
    let file = File::open(path)?;
    let ino = file.metadata()?.ino();
    Ok((file, ino))
}

/// The first line of `path`, once it is complete.
fn first_line(path: &Path) -> std::io::Result<Option<Line>> {
    first_line_of(&File::open(path)?)
}

/// The first line of the open `file`, once it is complete (its read position is left alone).
fn first_line_of(file: &File) -> std::io::Result<Option<Line>> {
    let mut head = Vec::new();
    let mut reader = file.try_clone()?;
    reader.seek(SeekFrom::Start(0))?;
    reader.take(64 * 1024).read_to_end(&mut head)?;
    Ok(head
        .iter()
        .position(|b| *b == b'\n')
        .and_then(|end| serde_json::from_slice(&head[..end]).ok()))
}

/// The rotated files between the file with inode `old` and `live` (the live file, opened from
/// `path`), oldest first, found by following each file's `previous_file`; `None` while the
/// live file has no first line. The chain starts from the file already opened: the name may
/// point at a newer file by now (another rotation), whose lines the next look reads.
fn rotated_since(path: &Path, live: &File, old: u64) -> std::io::Result<Option<Vec<PathBuf>>> {
    let Some(mut line) = first_line_of(live)? else {
        return Ok(None);
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut missed = Vec::new();
    while let Some(name) = line.previous_file.take() {
        let previous = folder.join(name);
        match std::fs::metadata(&previous) {
            Ok(m) if m.ino() != old => {}
            // Back at the file being read, or the chain leaves this folder: done.
            _ => break,
        }
        missed.push(previous.clone());
        match first_line(&previous)? {
            Some(l) => line = l,
            None => break,
        }
    }
    missed.reverse();
    Ok(Some(missed))
}

fn tail(args: &TailArgs) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut file, mut ino) = open(&args.file)?;
    let mut all = Vec::new();
    file.read_to_end(&mut all)?;
    // Only whole lines; the rest waits for its newline.
    let complete = all.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let lines: Vec<&[u8]> = all[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let skip = if args.lines == 0 {
        0
    } else {
        lines.len().saturating_sub(args.lines)
    };
    for raw in &lines[skip..] {
        print_lines(raw, args.json, &mut out)?;
    }
    if !args.follow {
        return Ok(());
    }
    let mut partial = all[complete..].to_vec();
    let mut offset = all.len() as u64;
    loop {
        std::thread::sleep(POLL);
        let mut fresh = Vec::new();
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_end(&mut fresh)?;
        offset += fresh.len() as u64;
        partial.extend_from_slice(&fresh);
        if let Some(i) = partial.iter().rposition(|b| *b == b'\n') {
            let rest = partial.split_off(i + 1);
            print_lines(&partial, args.json, &mut out)?;
            partial = rest;
        }
        // Rotated: the old file is read to its end above; go on with the new one.
        match std::fs::metadata(&args.file) {
            Ok(m) if m.ino() != ino => {
                // Open the new file first, then follow its chain back: a rotation between the
                // two would otherwise skip the file in between.
                let (next, next_ino) = open(&args.file)?;
                // The new file names the one before it only once its first line is there.
                let Some(missed) = rotated_since(&args.file, &next, ino)? else {
                    continue;
                };
                // Lines the writer added to the old file just before renaming it.
                let mut last = Vec::new();
                file.seek(SeekFrom::Start(offset))?;
                file.read_to_end(&mut last)?;
                partial.extend_from_slice(&last);
                print_lines(&partial, args.json, &mut out)?;
                // Files that came and went between two looks (fast rotation), oldest first.
                for rotated in missed {
                    print_lines(&std::fs::read(rotated)?, args.json, &mut out)?;
                }
                (file, ino) = (next, next_ino);
                offset = 0;
                partial.clear();
            }
            Ok(m) if m.len() < offset => {
                eprintln!(
                    "signerd audit tail: {} got shorter: it was truncated; reading it from the start",
                    args.file.display()
                );
                offset = 0;
                partial.clear();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines_escape_caller_text() {
        let raw = br#"{"seq":4,"prev":"00","type":"record","time":"t","port":"notary","identity":"CN=a\nb","method":"Sign","outcome":"ok","duration_us":7,"error":"\u001b[2J"}"#;
        let text = human(raw);
        assert_eq!(
            text,
            r#"t #4 port=notary method=Sign outcome=ok by="CN=a\nb" 7us error="\u{1b}[2J""#
        );
        assert!(human(b"junk\x1b").starts_with("? unreadable line: \"junk\\u{1b}\""));
    }
}

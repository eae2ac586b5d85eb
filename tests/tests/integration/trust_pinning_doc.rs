//! docs/trust-pinning.md, followed literally: its ```` ```sh ```` blocks, in order, in one
//! shell, in an empty folder of the test's own, with signerd's development default (no
//! configuration), the real notary-server and the notary CLI through the PKCS#11 shim. The
//! guide ends with a pinned client verifying the repository; so does this test.
//!
//! Nothing in the blocks is rewritten. The shell runs in private namespaces (see
//! [`signerd_tests::namespace`]): its `/usr/local/lib` is a folder of the test's own, so the
//! guide's `sudo signerd shim install` writes there, and its network has only a loopback of its
//! own, so the guide's fixed ports (7899, 4443) cannot meet another test's. Everything the
//! guide starts in the background dies with that shell (its PID namespace).

use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use signerd_tests::artifacts::{shim_module, signerd_bin};
use signerd_tests::namespace::PrivateLib;
use signerd_tests::process::{file_tail, output_with_timeout};
use signerd_tests::TestDir;

/// The guide, as the repository has it.
const GUIDE: &str = include_str!("../../../docs/trust-pinning.md");

/// Longest the whole guide may take (a few seconds normally; notary-server and the notary CLI
/// are slow on a loaded machine).
const GUIDE_TIMEOUT: Duration = Duration::from_secs(300);

/// Printed before each block, so the output can be cut at block boundaries.
const BLOCK_MARK: &str = "==> docs/trust-pinning.md block";

/// One runnable block: its first line number in the guide and its text.
#[derive(Debug)]
struct Block {
    line: usize,
    text: String,
}

/// The guide's ```` ```sh ```` blocks; fences with any other info string (`shell`, `text`,
/// `json`, `toml`) are shown, not run.
fn runnable_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut in_other_fence = false;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut current, fence) {
            (Some(_), true) => blocks.extend(current.take()),
            (Some(block), false) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, true) if in_other_fence => in_other_fence = false,
            (None, true) if line.trim() == "```sh" => {
                current = Some(Block {
                    line: i + 2,
                    text: String::new(),
                })
            }
            (None, true) => in_other_fence = true,
            (None, false) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block in the guide");
    blocks
}

/// The script: the guide's blocks in order, each announced, under `set -eu` so the first
/// failing command stops it with its status.
fn script(blocks: &[Block]) -> String {
    let mut script = String::from(
        "set -eu\n\
         # As root, sudo adds nothing (and may not be installed).\n\
         sudo() { \"$@\"; }\n",
    );
    for (n, block) in blocks.iter().enumerate() {
        script.push_str(&format!(
            "echo '{BLOCK_MARK} {} (line {})'\n",
            n + 1,
            block.line
        ));
        script.push_str(&block.text);
    }
    script
}

#[test]
fn blocks_are_read_in_order_and_only_sh_ones_run() {
    let doc = "text\n```sh\na\nb\n```\n```shell\nnot run\n```\n```text\nout\n```\n```sh\nc\n```\n";
    let blocks = runnable_blocks(doc);
    let texts: Vec<&str> = blocks.iter().map(|b| b.text.as_str()).collect();
    assert_eq!(texts, ["a\nb\n", "c\n"]);
    assert_eq!((blocks[0].line, blocks[1].line), (3, 13));
}

#[test]
fn the_trust_pinning_guide_runs_top_to_bottom_and_a_pinned_client_verifies() -> io::Result<()> {
    let blocks = runnable_blocks(GUIDE);
    let last = blocks.last().expect("the guide has sh blocks");
    assert!(
        last.text.contains("verify") && last.text.contains("reader/config.json"),
        "the guide must end with a pinned client verifying; its last block is:\n{}",
        last.text
    );

    let dir = TestDir::new("trust-pinning-doc")?;
    let work = dir.subdir("work")?;
    let home = dir.subdir("home")?;
    let signerd = signerd_bin();
    let bin_dir = signerd.parent().expect("signerd is in a folder");
    // `signerd shim install` without --module links the shim beside the signerd binary.
    let beside = bin_dir.join("libpkcs11_shim.so");
    assert!(
        beside.is_file(),
        "{} is missing: the guide's `signerd shim install` links the shim beside signerd \
         (cargo build --workspace builds both; the shim under test is {})",
        beside.display(),
        shim_module().display()
    );
    let script_file = dir.path().join("guide.sh");
    std::fs::write(&script_file, script(&blocks))?;

    let namespace = PrivateLib::new(dir.path())?.with_private_network();
    let mut command: Command = namespace.command("/bin/bash");
    command
        .arg(&script_file)
        .current_dir(&work)
        .env_clear()
        .env("HOME", &home)
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir.display()),
        )
        .env("LANG", "C.UTF-8");
    let output = output_with_timeout(command, None, &dir.path().join("guide"), GUIDE_TIMEOUT)
        .map_err(|e| io::Error::other(format!("{e}\n{}", logs(&work))))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "following docs/trust-pinning.md failed ({}) in the block announced last:\n\
         --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
        output.status,
        logs(&work)
    );

    // The last block's output holds the target, as `notary verify` printed it.
    let target = std::fs::read_to_string(work.join("v1.txt"))?;
    let last_output = stdout
        .rsplit(BLOCK_MARK)
        .next()
        .expect("the script announces its blocks");
    assert!(
        !target.is_empty() && last_output.contains(&target),
        "the pinned client did not print the verified target {target:?}:\n{last_output}"
    );
    // The client that verified is pinned to the token's CA, with trust on first use off.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("reader/config.json"))?)
            .expect("reader/config.json is JSON");
    let ca = work.join("ca.pem").display().to_string();
    assert_eq!(
        config["trust_pinning"]["ca"]["example.com/acme"], ca,
        "{config}"
    );
    assert_eq!(config["trust_pinning"]["disable_tofu"], true, "{config}");
    // The owner's trust dir holds no root key: it signed from the token.
    let root_files: Vec<String> = files_under(&home.join(".notary/private"))
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("role: root")))
        .map(|f| f.display().to_string())
        .collect();
    assert!(root_files.is_empty(), "root key files: {root_files:?}");
    // The link went to the test's own folder, never to the real /usr/local/lib.
    let linked = std::fs::read_link(namespace.folder().join("libykcs11.so"))?;
    assert_eq!(
        std::fs::canonicalize(&linked)?,
        std::fs::canonicalize(&beside)?
    );
    Ok(())
}

/// The tails of the logs the guide's background processes write.
fn logs(work: &Path) -> String {
    ["signerd.log", "notary-server.log"]
        .iter()
        .map(|name| format!("--- {name} ---\n{}\n", file_tail(&work.join(name), 40)))
        .collect()
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

//! Instruction counts of the suite under valgrind's callgrind, for the `instructions`
//! scenario: the suite runs as `valgrind --tool=callgrind smooch all`, the harness zeroes
//! and dumps its counters around a window with `callgrind_control`, and this module reads
//! a dump's total and its instructions by crate.
//!
//! callgrind counts instructions executed, not time: the same binary given the same work
//! counts the same within a fraction of a percent, whatever else the machine does. That
//! makes a cut of a few percent measurable on a machine whose CPU time per message moves
//! by a tenth from one run to the next.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use tokio::process::Command;

/// The valgrind command line that runs `binary` under callgrind, writing its dumps to
/// `out_file.N` (`N` from 1, one per `callgrind_control --dump`). Function-level counts
/// only (no per-instruction or jump data), which keeps the slowdown and the dumps small.
pub fn command(binary: &Path, out_file: &Path) -> Command {
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .args(["--dump-instr=no", "--collect-jumps=no"])
        .arg(binary);
    cmd
}

/// Runs `callgrind_control` with `args` against process `pid`.
async fn control(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .await
        .context("running callgrind_control (it comes with valgrind)")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {} {pid} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Sets the counters of the callgrind process `pid` to zero.
pub async fn zero(pid: u32) -> anyhow::Result<()> {
    control(pid, &["--zero"]).await
}

/// Dumps the counters of process `pid` since the last zero or dump, and reads the dump,
/// which callgrind writes next to `out_file` as `out_file.N`. `workspace` is the
/// repository's root, whose crates are named as the suite's own.
pub async fn dump(pid: u32, out_file: &Path, workspace: &Path) -> anyhow::Result<Dump> {
    let before = dumps(out_file)?;
    control(pid, &["--dump"]).await?;
    // callgrind_control returns once the process has written the file.
    let path = dumps(out_file)?
        .into_iter()
        .find(|p| !before.contains(p))
        .ok_or_else(|| anyhow!("callgrind wrote no new dump next to {}", out_file.display()))?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut dump = parse(&text, workspace)?;
    dump.path = path;
    Ok(dump)
}

/// The numbered dumps next to `out_file`.
fn dumps(out_file: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = out_file.parent().unwrap_or(Path::new("."));
    let stem = out_file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{} has no file name", out_file.display()))?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let numbered = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(stem))
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            found.push(path);
        }
    }
    Ok(found)
}

/// One callgrind dump.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// Where it was read from.
    pub path: PathBuf,
    /// Instructions executed in the dump's window (its `summary:` line).
    pub total: u64,
    /// Instructions by the crate whose source each instruction came from (inlined code
    /// counts for the crate it was written in), largest first.
    pub by_crate: Vec<(String, u64)>,
}

/// Reads a callgrind dump (format version 1, event `Ir` first): its total, and each cost
/// line's instructions added to the crate of the source file it names. Call lines (the
/// line after `calls=`) carry a callee's inclusive cost and are skipped, so the crates'
/// sum is the total.
pub fn parse(text: &str, workspace: &Path) -> anyhow::Result<Dump> {
    let mut total = None;
    // Compressed names: "(12) /path" defines 12, "(12)" refers to it.
    let mut files: HashMap<String, String> = HashMap::new();
    let mut objects: HashMap<String, String> = HashMap::new();
    let (mut object, mut fn_file, mut cost_file) = (String::new(), String::new(), String::new());
    let mut skip_next_cost = false;
    let mut by_crate: HashMap<String, u64> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("summary:") {
            total = Some(
                rest.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .parse::<u64>()
                    .with_context(|| format!("reading the summary line {line:?}"))?,
            );
            continue;
        }
        let Some(first) = line.bytes().next() else {
            continue;
        };
        if first.is_ascii_digit() || first == b'+' || first == b'-' || first == b'*' {
            if std::mem::take(&mut skip_next_cost) {
                continue;
            }
            // "<line> <Ir> ...": the first event is Ir.
            let ir = line
                .split_whitespace()
                .nth(1)
                .map(str::parse::<u64>)
                .transpose()
                .with_context(|| format!("reading the cost line {line:?}"))?
                .unwrap_or(0);
            *by_crate
                .entry(crate_of(&cost_file, &object, workspace))
                .or_default() += ir;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "ob" => object = resolve(&mut objects, value),
            "fl" => {
                fn_file = resolve(&mut files, value);
                cost_file = fn_file.clone();
            }
            "fi" | "fe" => cost_file = resolve(&mut files, value),
            "fn" => cost_file = fn_file.clone(),
            // A call's file and object name the callee; they are defined here too.
            "cfi" | "cfl" => {
                resolve(&mut files, value);
            }
            "cob" => {
                resolve(&mut objects, value);
            }
            "calls" => skip_next_cost = true,
            _ => {}
        }
    }
    let total = total.ok_or_else(|| anyhow!("the dump has no summary line"))?;
    let mut by_crate: Vec<(String, u64)> = by_crate.into_iter().filter(|(_, n)| *n > 0).collect();
    by_crate.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Dump {
        path: PathBuf::new(),
        total,
        by_crate,
    })
}

/// The name a compressed reference stands for, remembering new definitions.
fn resolve(names: &mut HashMap<String, String>, value: &str) -> String {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('(') {
        if let Some((id, name)) = rest.split_once(')') {
            let name = name.trim();
            if name.is_empty() {
                return names.get(id).cloned().unwrap_or_default();
            }
            names.insert(id.to_owned(), name.to_owned());
            return name.to_owned();
        }
    }
    value.to_owned()
}

/// The crate a source file belongs to: `name` for a crates.io crate (its version
/// dropped), `std` for the standard library, the directory name for one of the
/// workspace's own crates (`smooch` for the binary's), and otherwise the object's file
/// name (`libc.so.6`).
fn crate_of(file: &str, object: &str, workspace: &Path) -> String {
    if let Some((_, rest)) = file.split_once("/registry/src/") {
        // <index>/<crate>-<version>/...
        if let Some(dir) = rest.split('/').nth(1) {
            let name = match dir.rfind('-') {
                Some(i) if dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => &dir[..i],
                _ => dir,
            };
            return name.to_owned();
        }
    }
    if let Some(rest) = file.strip_prefix("/rustc/") {
        // <hash>/library/<core|alloc|std>/src/<module>[.rs|/...]: the standard library
        // is the biggest "crate" (generic code inlined everywhere), so it is split by
        // library and module.
        let parts: Vec<&str> = rest.split('/').skip(2).collect();
        return match parts.as_slice() {
            [lib, "src", module, ..] => {
                format!("{lib}::{}", module.trim_end_matches(".rs"))
            }
            _ => "std".to_owned(),
        };
    }
    if let Ok(rest) = Path::new(file).strip_prefix(workspace) {
        let parts: Vec<&str> = rest.iter().filter_map(|p| p.to_str()).collect();
        return match parts.as_slice() {
            ["crates" | "services", name, ..] => format!("{name} (ours)"),
            _ => "smooch (ours)".to_owned(),
        };
    }
    let object = object.rsplit('/').next().unwrap_or(object);
    match (object.is_empty(), file == "???" || file.is_empty()) {
        (true, _) => "unknown".to_owned(),
        (false, true) => format!("{object} (no line info)"),
        (false, false) => object.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
# callgrind format
version: 1
creator: callgrind-3.19.0
cmd:  /work/tools/smooch all
part: 1

positions: line
events: Ir
summary: 1111

ob=(1) /usr/lib/x86_64-linux-gnu/libc.so.6
fl=(1) ./string/memcpy.S
fn=(1) memcpy
10 100

ob=(2) /srv/smooch
fl=(2) /srv/smooch/services/gateway/src/routes/conversation.rs
fn=(2) gateway::post
5 200
fi=(3) /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde_json-1.0.154/src/ser.rs
+3 300
fe=(2)
+1 10
cob=(1)
cfi=(1)
cfn=(1)
calls=2 10
7 100
fl=(4) /rustc/abc/library/core/src/fmt/mod.rs
fn=(3) core::fmt::write
1 400
fl=(5) /srv/smooch/src/main.rs
fn=(4) main
2 1
";

    #[test]
    fn a_dump_is_read_by_crate_without_counting_calls_twice() {
        let dump = parse(DUMP, Path::new("/srv/smooch")).expect("the dump parses");
        assert_eq!(dump.total, 1111);
        let by: HashMap<_, _> = dump.by_crate.iter().cloned().collect();
        assert_eq!(by["libc.so.6"], 100);
        // The function's own lines, before and after the inlined serde_json code.
        assert_eq!(by["gateway (ours)"], 210);
        assert_eq!(by["serde_json"], 300);
        assert_eq!(by["core::fmt"], 400);
        assert_eq!(by["smooch (ours)"], 1);
        // The call line's 100 is memcpy's, already counted where memcpy is.
        assert_eq!(dump.by_crate.iter().map(|(_, n)| n).sum::<u64>(), 1011);
        assert_eq!(dump.by_crate[0], ("core::fmt".to_owned(), 400));
    }

    #[test]
    fn a_dump_without_a_summary_is_an_error() {
        let error =
            parse("events: Ir\nfn=(1) f\n1 2\n", Path::new("/")).expect_err("no summary line");
        assert_eq!(error.to_string(), "the dump has no summary line");
    }

    #[test]
    fn crates_are_named_without_their_versions() {
        let ws = Path::new("/w");
        let reg = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        assert_eq!(
            crate_of(&format!("{reg}/tokio-1.54.1/src/lib.rs"), "", ws),
            "tokio"
        );
        assert_eq!(
            crate_of(&format!("{reg}/libmimalloc-sys-0.1.49/c_src/x.c"), "", ws),
            "libmimalloc-sys"
        );
        assert_eq!(crate_of("/w/crates/bus/src/relay.rs", "", ws), "bus (ours)");
        assert_eq!(crate_of("/w/bench/src/x.rs", "", ws), "smooch (ours)");
        assert_eq!(
            crate_of("/rustc/59807616/library/alloc/src/vec/mod.rs", "", ws),
            "alloc::vec"
        );
        assert_eq!(
            crate_of("/rustc/59807616/library/core/src/ptr.rs", "", ws),
            "core::ptr"
        );
        assert_eq!(
            crate_of("./string/memcpy.S", "/usr/lib/libc.so.6", ws),
            "libc.so.6"
        );
        assert_eq!(crate_of("???", "/srv/smooch", ws), "smooch (no line info)");
        assert_eq!(crate_of("???", "", ws), "unknown");
    }
}

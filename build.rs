//! Stamps the binary with the git revision it was built from (`bramble
//! version`, /version's gitCommit). BRAMBLE_GIT_REVISION set in the
//! environment wins, for builds from a tarball.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=BRAMBLE_GIT_REVISION");
    // Rebuilt when HEAD moves: HEAD itself (checkout) and the branch it
    // names (commit). Worktrees keep these outside `.git/`.
    let mut watched = vec!["HEAD".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let revision = std::env::var("BRAMBLE_GIT_REVISION")
        .ok()
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BRAMBLE_GIT_REVISION={revision}");
}

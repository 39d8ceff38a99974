//! Limits with clear errors: a namespace holds at most the board's number of
//! objects, an image over the board's size is refused, and the daemon keeps
//! serving and loses nothing.

use serde_json::Value;

use crate::support::{Server, TempDir, wait_for};

fn board(dir: &TempDir, text: &str) -> String {
    let path = dir.0.join("board.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn config_map(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{n: \"{name}\"}}\n"
    )
}

#[test]
fn a_namespace_holds_at_most_the_boards_number_of_objects() {
    let dir = TempDir::new("limits-ns");
    let s = Server::start_with(&[
        "--config",
        &board(&dir, "[limits]\nobjects_per_namespace = 100\n"),
    ]);
    let mut refused = None;
    for i in 0..110 {
        let out = s.kubectl_stdin(&["create", "-f", "-"], &config_map(&format!("cm-{i}")));
        if !out.status.success() {
            refused = Some((i, String::from_utf8_lossy(&out.stderr).into_owned()));
            break;
        }
    }
    let (at, err) = refused.expect("the 101st object of a namespace is refused");
    assert!(
        err.contains("namespace default already holds 100 objects")
            && err.contains("[limits] objects_per_namespace"),
        "{err}"
    );
    // Every object acknowledged before is there; another namespace is not full.
    let listed: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "configmaps", "-o", "json"])).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), at);
    s.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n");
    let out = s.kubectl_stdin(&["create", "-n", "other", "-f", "-"], &config_map("fits"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Deleting makes room again.
    s.kubectl_ok(&["delete", "configmap", "cm-0"]);
    let out = s.kubectl_stdin(&["create", "-f", "-"], &config_map("again"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_image_over_the_boards_size_is_refused() {
    let Some(fx) = crate::support::fixtures::busybox_image() else {
        return;
    };
    let dir = TempDir::new("limits-image");
    let s = Server::start_with(&[
        "--config",
        &board(&dir, "[limits]\nmax_image_size = \"64Ki\"\n"),
    ]);
    let import = s.data_dir().join("images/import");
    std::fs::create_dir_all(&import).unwrap();
    std::fs::copy(&fx.oci_archive, import.join("busybox.tar")).unwrap();
    wait_for(30, "the refusal in the log", || {
        s.log()
            .contains("over this board's limit of 65536 bytes ([limits] max_image_size")
            .then_some(())
    });
    let images = std::process::Command::new(crate::support::bramble())
        .args(["image", "ls", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&images.stdout);
    assert!(!listed.contains("busybox"), "{listed}");
    // Still serving.
    s.kubectl_ok(&["get", "nodes"]);
}

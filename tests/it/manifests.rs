//! The manifests folder: files dropped into DATA_DIR/manifests create their
//! objects, edits update them, and deleting a file deletes what it made.

use crate::support::{Server, wait_for};

fn data(s: &Server, name: &str) -> Option<String> {
    let out = s.kubectl(&["get", "configmap", name, "-o", "jsonpath={.data.greeting}"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn exists(s: &Server, what: &str) -> bool {
    s.kubectl(&["get", what]).status.success()
}

#[test]
fn a_manifest_file_creates_updates_and_deletes_its_objects() {
    let mut s = Server::start();
    let dir = s.data_dir().join("manifests");
    wait_for(5, "the daemon to make the folder", || {
        dir.is_dir().then_some(())
    });
    let file = dir.join("hello.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hello}\ndata: {greeting: hi}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: hello}\nspec: {selector: {app: hello}, ports: [{port: 80}]}\n",
    )
    .unwrap();
    wait_for(15, "the file's objects", || {
        (data(&s, "hello").as_deref() == Some("hi") && exists(&s, "service/hello")).then_some(())
    });

    // An edit updates the ConfigMap and deletes the Service it dropped.
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hello}\ndata: {greeting: hello}\n",
    )
    .unwrap();
    wait_for(15, "the edit applied", || {
        (data(&s, "hello").as_deref() == Some("hello") && !exists(&s, "service/hello"))
            .then_some(())
    });

    // A broken file is reported and deletes nothing.
    std::fs::write(&file, "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n").unwrap();
    wait_for(15, "the error logged", || {
        s.log()
            .contains("hello.yaml is not valid YAML")
            .then_some(())
    });
    assert_eq!(data(&s, "hello").as_deref(), Some("hello"));

    // Objects made by hand are not the folder's.
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: by-hand}\ndata: {greeting: yo}\n");
    std::fs::remove_file(&file).unwrap();
    wait_for(15, "the file's objects deleted", || {
        data(&s, "hello").is_none().then_some(())
    });
    assert_eq!(data(&s, "by-hand").as_deref(), Some("yo"));

    // A file removed while the daemon is down takes its objects at start.
    let other = dir.join("other.json");
    std::fs::write(
        &other,
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}, "data": {"greeting": "x"}}"#,
    )
    .unwrap();
    wait_for(15, "other created", || data(&s, "other"));
    s.terminate();
    std::fs::remove_file(&other).unwrap();
    s.spawn(&[]);
    wait_for(15, "other deleted at start", || {
        data(&s, "other").is_none().then_some(())
    });
    assert_eq!(data(&s, "by-hand").as_deref(), Some("yo"));
}

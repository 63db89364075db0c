use super::*;
use chrono::TimeZone;

fn claim(yaml: &str) -> PersistentVolumeClaim {
    let text = format!("apiVersion: v1\nkind: PersistentVolumeClaim\n{yaml}");
    match podrun_spec::load(&text, "c.yaml").unwrap().remove(0) {
        podrun_spec::Object::PersistentVolumeClaim(c) => c,
        other => panic!("not a claim: {other:?}"),
    }
}

fn at(seconds: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .timestamp_opt(1_700_000_000 + seconds, 0)
        .unwrap()
}

const DATA: &str = "metadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";

#[test]
fn access_modes_are_abbreviated_once_each_in_kubectls_order() {
    let modes = |m: &[&str]| access_modes(&m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(modes(&["ReadWriteOnce"]), "RWO");
    assert_eq!(modes(&["ReadWriteOncePod"]), "RWOP");
    assert_eq!(
        modes(&[
            "ReadWriteMany",
            "ReadOnlyMany",
            "ReadWriteOnce",
            "ReadOnlyMany"
        ]),
        "RWO,ROX,RWX"
    );
    assert_eq!(modes(&[]), "");
}

#[test]
fn a_stored_claim_is_bound_with_its_request_as_capacity() {
    let stored = stored(&claim(DATA), None, "1234", at(0));
    let rows = rows(&[with_status(&stored)], false, at(90));
    assert_eq!(
        rows,
        vec![
            vec![
                "NAME",
                "STATUS",
                "VOLUME",
                "CAPACITY",
                "ACCESS MODES",
                "STORAGECLASS",
                "VOLUMEATTRIBUTESCLASS",
                "AGE"
            ],
            vec!["data", "Bound", "pvc-1234", "1Gi", "RWO", "", "<unset>", "90s"],
        ]
    );
    let mut out = Vec::new();
    crate::table::write(&mut out, &rows).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "NAME   STATUS   VOLUME     CAPACITY   ACCESS MODES   STORAGECLASS   VOLUMEATTRIBUTESCLASS   AGE\n\
         data   Bound    pvc-1234   1Gi        RWO                           <unset>                 90s\n"
    );
}

#[test]
fn all_namespaces_a_class_and_terminating_show_as_kubectl_shows_them() {
    let mut c = with_status(&stored(
        &claim("metadata: {name: logs, namespace: team}\nspec:\n  accessModes: [ReadWriteMany, ReadOnlyMany]\n  storageClassName: local\n  volumeAttributesClassName: gold\n  resources: {requests: {storage: 500Mi}}\n"),
        None,
        "ab",
        at(0),
    ));
    c.metadata.deletion_timestamp = Some(time(at(1)));
    let rows = rows(&[c], true, at(3600));
    assert_eq!(rows[0][0], "NAMESPACE");
    assert_eq!(
        rows[1],
        vec![
            "team",
            "logs",
            "Terminating",
            "pvc-ab",
            "500Mi",
            "ROX,RWX",
            "local",
            "gold",
            "60m"
        ]
    );
}

#[test]
fn a_reapplied_claim_keeps_its_uid_time_and_volume() {
    let first = stored(&claim(DATA), None, "one", at(0));
    let again = stored(&claim(DATA), Some(&first), "two", at(50));
    assert_eq!(again, first);
    assert_eq!(
        first.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("pvc-one")
    );
    let annotations = first.metadata.annotations.clone().unwrap();
    assert!(annotations[CAPACITY_NOT_ENFORCED].contains("not enforced"));
    let status = with_status(&first).status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Bound"));
}

#[test]
fn the_directory_is_under_the_root_by_namespace_and_name_and_kept_when_there() {
    let root = tempfile::tempdir().unwrap();
    assert_eq!(
        dir(root.path(), "default", "data"),
        root.path().join("volumes/default/data")
    );
    assert!(create_dir(root.path(), "default", "data").unwrap());
    std::fs::write(root.path().join("volumes/default/data/kept"), "x").unwrap();
    assert!(!create_dir(root.path(), "default", "data").unwrap());
    assert!(root.path().join("volumes/default/data/kept").exists());
    remove_dir(root.path(), "default", "data").unwrap();
    assert!(!root.path().join("volumes/default/data").exists());
    remove_dir(root.path(), "default", "data").unwrap();
}

#[test]
#[should_panic(expected = "needs its namespace and name")]
fn an_empty_name_never_names_a_parent_directory() {
    dir(Path::new("/var/lib/podrun"), "default", "");
}

#[test]
fn uids_have_the_uuid_form() {
    let uid = new_uid();
    assert_eq!(uid.len(), 36);
    assert_eq!(uid.as_bytes()[14], b'4');
    assert_ne!(uid, new_uid());
}

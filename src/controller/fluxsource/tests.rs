use super::*;

#[test]
fn artifacts_are_fetched_only_from_listed_hosts_and_ports() {
    let hosts = vec![
        "source-controller.flux-system.svc.cluster.local.".to_owned(),
        "127.0.0.1:9090".to_owned(),
    ];
    for ok in [
        "http://source-controller.flux-system.svc.cluster.local./gitrepository/a/b/c.tar.gz",
        "http://source-controller.flux-system.svc.cluster.local/x.tar.gz",
        "http://SOURCE-CONTROLLER.flux-system.svc.cluster.local:80/x.tar.gz",
        "http://127.0.0.1:9090/x.tar.gz",
    ] {
        assert!(allowed(ok, &hosts).is_ok(), "{ok}");
    }
    for refused in [
        "http://127.0.0.1:9091/x.tar.gz",
        "http://127.0.0.1/x.tar.gz",
        "http://evil.example/x.tar.gz",
        "http://evil.example?@source-controller.flux-system.svc.cluster.local/x",
        "http://user@source-controller.flux-system.svc.cluster.local/x",
        "file:///etc/passwd",
        "gopher://source-controller.flux-system.svc.cluster.local/x",
        "not a url",
    ] {
        let err = allowed(refused, &hosts).unwrap_err();
        assert_eq!(err.label(), "ArtifactHostNotAllowed", "{refused}");
    }
}

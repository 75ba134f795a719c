//! Proof that a client with other (or no) credentials can neither read nor modify
//! znodes created under `creator` ACLs.

use zookeeper_client as zk;

/// Tries every kind of access on each of `paths` with `intruder` and asserts that the
/// server answered `NoAuth` each time: read, list, set, delete, create a child,
/// change the ACL. Returns how many operations were refused.
pub async fn assert_locked_out(intruder: &zk::Client, who: &str, paths: &[String]) -> usize {
    let mut refused = 0;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for path in paths {
        let outcomes: [(&str, Result<(), zk::Error>); 6] = [
            ("get_data", intruder.get_data(path).await.map(|_| ())),
            ("list_children", intruder.list_children(path).await.map(|_| ())),
            ("set_data", intruder.set_data(path, b"intruder", None).await.map(|_| ())),
            ("delete", intruder.delete(path, None).await),
            (
                "create child",
                intruder
                    .create(&format!("{path}/intruder"), b"x", &persistent)
                    .await
                    .map(|_| ()),
            ),
            (
                "set_acl",
                intruder.set_acl(path, &zk::Acls::anyone_all(), None).await.map(|_| ()),
            ),
        ];
        for (op, outcome) in outcomes {
            match outcome {
                Err(zk::Error::NoAuth) => refused += 1,
                other => panic!("{who}: {op} on {path}: expected NoAuth, got {other:?}"),
            }
        }
    }
    refused
}

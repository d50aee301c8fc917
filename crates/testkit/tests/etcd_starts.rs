//! The harness itself works: a real etcd starts, answers, and is gone after drop.

use std::net::TcpStream;

#[test]
fn single_member_starts_and_stops() {
    let cluster = skiff_testkit::EtcdCluster::start();
    let addr = cluster.endpoints()[0]
        .trim_start_matches("http://")
        .to_string();
    assert!(
        TcpStream::connect(&addr).is_ok(),
        "etcd should accept connections on {addr}"
    );
    drop(cluster);
    assert!(
        TcpStream::connect(&addr).is_err(),
        "etcd should be stopped after drop"
    );
}

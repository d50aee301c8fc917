//! Service address allocation seen through kubectl: ClusterIPs from the service CIDR
//! (10.43.0.0/16 by default), NodePorts from 30000-32767, never shared, freed on delete.

mod support;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use support::Server;

fn service(name: &str, kind: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: {kind}\n  selector: {{app: {name}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
    )
}

fn cluster_ip(server: &Server, name: &str) -> Ipv4Addr {
    let ip = server.ok(&["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"]);
    ip.parse()
        .unwrap_or_else(|_| panic!("service {name} has no IPv4 ClusterIP: {ip:?}"))
}

fn in_service_cidr(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 10 && b == 43
}

#[test]
fn services_get_distinct_cluster_ips_and_node_ports() {
    let server = Server::start();
    let docs: Vec<String> = (0..10)
        .map(|i| {
            service(
                &format!("s{i}"),
                if i % 2 == 0 { "ClusterIP" } else { "NodePort" },
            )
        })
        .collect();
    server.ok_stdin(&["create", "-f", "-"], &docs.join("---\n"));
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for i in 0..10 {
        let name = format!("s{i}");
        let ip = cluster_ip(&server, &name);
        assert!(in_service_cidr(ip), "{name}: {ip} outside 10.43.0.0/16");
        assert!(ips.insert(ip), "{ip} given twice");
        let obj = server.get_json(&["get", "svc", &name]);
        assert_eq!(obj["spec"]["clusterIPs"][0], ip.to_string());
        assert_eq!(obj["spec"]["ports"][0]["protocol"], "TCP");
        if i % 2 == 1 {
            let port = obj["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
            assert!((30000..=32767).contains(&port), "{name}: nodePort {port}");
            assert!(ports.insert(port), "nodePort {port} given twice");
        } else {
            assert!(obj["spec"]["ports"][0].get("nodePort").is_none());
        }
    }
    let out = server.ok(&["get", "svc", "s1"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    let port = server.ok(&[
        "get",
        "svc",
        "s1",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    assert_eq!(
        &row[..5],
        [
            "s1",
            "NodePort",
            &cluster_ip(&server, "s1").to_string(),
            "<none>",
            &format!("80:{port}/TCP")
        ]
    );
}

#[test]
fn a_requested_address_is_honoured_once_and_reusable_after_delete() {
    let server = Server::start();
    let fixed = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  clusterIP: 10.43.7.7\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 31234\n"
        )
    };
    server.ok_stdin(&["create", "-f", "-"], &fixed("first"));
    assert_eq!(cluster_ip(&server, "first"), Ipv4Addr::new(10, 43, 7, 7));
    // The same address (another node port): the error names the address only.
    let same_ip = fixed("second").replace("31234", "31235");
    let err = server.fails_stdin(&["create", "-f", "-"], &same_ip);
    assert!(
        err.contains(r#"The Service "second" is invalid: spec.clusterIPs: Invalid value: "#)
            && err.contains("failed to allocate IP 10.43.7.7: provided IP is already allocated")
            && !err.contains("nodePort"),
        "{err}"
    );
    // The same node port (another address): the error names the port.
    let same_port = fixed("third").replace("10.43.7.7", "10.43.7.8");
    let err = server.fails_stdin(&["create", "-f", "-"], &same_port);
    assert!(
        err.contains(r#"The Service "third" is invalid: spec.ports[0].nodePort: Invalid value: 31234: provided port is already allocated"#),
        "{err}"
    );
    let outside = fixed("outside").replace("10.43.7.7", "192.168.0.1");
    let err = server.fails_stdin(&["create", "-f", "-"], &outside);
    assert!(err.contains(r#"The Service "outside" is invalid"#), "{err}");
    server.ok(&["delete", "svc", "first"]);
    server.ok_stdin(&["create", "-f", "-"], &fixed("second"));
    assert_eq!(cluster_ip(&server, "second"), Ipv4Addr::new(10, 43, 7, 7));
    assert_eq!(
        server.ok(&[
            "get",
            "svc",
            "second",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}"
        ]),
        "31234"
    );
}

#[test]
fn headless_services_get_no_address() {
    let server = Server::start();
    server.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: h\nspec:\n  clusterIP: None\n  selector: {app: h}\n  ports:\n  - port: 80\n",
    );
    assert_eq!(
        server.ok(&["get", "svc", "h", "-o", "jsonpath={.spec.clusterIP}"]),
        "None"
    );
}

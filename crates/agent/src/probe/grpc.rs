//! grpc probes: the standard `grpc.health.v1.Health/Check` call on the pod IP, with the
//! probe's `service`; only `SERVING` is success. Messages follow upstream's prober.

use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::tcp::join_host_port;
use super::{Outcome, USER_AGENT};

pub async fn probe(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    let within = format!("{}s", timeout.as_secs());
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e,
        Err(e) => {
            return Outcome::Failure(format!("error: failed to connect service at {addr:?}: {e}"))
        }
    };
    let endpoint = match endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(USER_AGENT)
    {
        Ok(e) => e,
        Err(e) => return Outcome::Failure(format!("error: {e}")),
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {within}: context deadline exceeded"
            ))
        }
        Ok(Err(e)) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at {addr:?}: {}",
                source_chain(&e)
            ))
        }
        Ok(Ok(c)) => c,
    };
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {within}"
        )),
        Ok(Err(status)) => Outcome::Failure(match status.code() {
            tonic::Code::Unimplemented => format!(
                "error: this server does not implement the grpc health protocol \
                 (grpc.health.v1.Health): {}",
                status.message()
            ),
            tonic::Code::DeadlineExceeded => {
                format!("timeout: health rpc did not complete within {within}")
            }
            code => format!(
                "error: health rpc probe failed: rpc error: code = {code:?} desc = {}",
                status.message()
            ),
        }),
        Ok(Ok(resp)) => {
            let status = resp.into_inner().status();
            if status == ServingStatus::Serving {
                Outcome::Success
            } else {
                Outcome::Failure(format!(
                    "service unhealthy (responded with {:?})",
                    status.as_str_name()
                ))
            }
        }
    }
}

/// An error with its causes, `a: b: c`.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::wrappers::TcpListenerStream;

    #[tokio::test]
    async fn health_check_by_service() {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("ready", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("sick", tonic_health::ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let t = Duration::from_secs(2);
        // The empty service is the server as a whole, serving by default.
        assert_eq!(probe("127.0.0.1", port, "", t).await, Outcome::Success);
        assert_eq!(probe("127.0.0.1", port, "ready", t).await, Outcome::Success);
        assert_eq!(
            probe("127.0.0.1", port, "sick", t).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let Outcome::Failure(msg) = probe("127.0.0.1", port, "unknown-svc", t).await else {
            panic!("an unknown service is not healthy");
        };
        assert!(
            msg.starts_with("error: health rpc probe failed: rpc error: code = NotFound"),
            "{msg}"
        );
        server.abort();
        let _ = server.await;
        let Outcome::Failure(msg) = probe("127.0.0.1", port, "", t).await else {
            panic!("a closed port is not healthy");
        };
        assert!(
            msg.starts_with(&format!(
                "error: failed to connect service at \"127.0.0.1:{port}\""
            )),
            "{msg}"
        );
    }
}

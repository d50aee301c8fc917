//! Service account and bootstrap tokens against a real `skiff server`: tokens from
//! `kubectl create token` authenticate a kube-rs client as the account; expired, forged,
//! wrongly addressed tokens and tokens whose account or bound object is gone get 401;
//! the OIDC documents verify issued tokens; bootstrap tokens authenticate until they
//! expire and the token cleaner deletes them.
//!
//! Identity is read from the authorizer's 403 message, which names the user (the
//! built-in authorizer lets only system:masters through).

mod support;

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::Value;
use support::{eventually, Server};

/// A kube-rs client presenting `token`, trusting the server's CA.
async fn token_client(server: &Server, token: &str) -> kube::Client {
    let ca = std::fs::read_to_string(server.data_dir.path().join("server/tls/ca.crt")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca);
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {b64}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n",
        server.url()
    );
    skiff_runtime::client::from_kubeconfig_yaml(&yaml, "test")
        .await
        .unwrap()
}

/// Who the server takes the client for: the user named in the 403 for listing pods, or
/// the HTTP code when it is not a 403.
async fn identity(client: &kube::Client) -> Result<String, u16> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(e)) if e.code == 403 => {
            let user = e
                .message
                .split_once("User \"")
                .and_then(|(_, rest)| rest.split('"').next())
                .unwrap_or_else(|| panic!("403 names no user: {}", e.message));
            Ok(user.to_string())
        }
        Err(kube::Error::Api(e)) => Err(e.code),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a non-admin listed pods"),
    }
}

fn create_token(server: &Server, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    server.ok(&all).trim().to_string()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn wait_for_default_account(server: &Server, ns: &str) {
    eventually(Duration::from_secs(20), "default ServiceAccount", || {
        server
            .kubectl(&["get", "serviceaccount", "default", "-n", ns])
            .status
            .success()
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_token_authenticates_as_the_account() {
    let server = Server::start();
    wait_for_default_account(&server, "default");
    let token = create_token(&server, &["default"]);
    let c = claims(&token);
    assert_eq!(c["sub"], "system:serviceaccount:default:default");
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(
        c["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert_eq!(c["kubernetes.io"]["namespace"], "default");
    let exp = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
    assert_eq!(exp, 3600, "default expiration is an hour");
    let client = token_client(&server, &token).await;
    assert_eq!(
        identity(&client).await,
        Ok("system:serviceaccount:default:default".into())
    );

    // --duration is honoured; less than 10 minutes is refused as upstream does.
    let short = create_token(&server, &["default", "--duration", "15m"]);
    let c = claims(&short);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    let err = server.fails(&["create", "token", "default", "--duration", "5m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let err = server.fails(&["create", "token", "nobody"]);
    assert!(
        err.contains("serviceaccounts \"nobody\" not found"),
        "{err}"
    );

    // A token for another audience is not for this API server.
    let other = create_token(&server, &["default", "--audience", "vault"]);
    assert_eq!(claims(&other)["aud"], serde_json::json!(["vault"]));
    assert_eq!(
        identity(&token_client(&server, &other).await).await,
        Err(401)
    );

    // Deleting the account kills its tokens, and a new account of the same name (new
    // UID) does not revive them.
    server.ok(&["create", "serviceaccount", "robot"]);
    let robot = create_token(&server, &["robot"]);
    let robot_client = token_client(&server, &robot).await;
    assert_eq!(
        identity(&robot_client).await,
        Ok("system:serviceaccount:default:robot".into())
    );
    server.ok(&["delete", "serviceaccount", "robot"]);
    assert_eq!(identity(&robot_client).await, Err(401));
    server.ok(&["create", "serviceaccount", "robot"]);
    assert_eq!(identity(&robot_client).await, Err(401));
}

#[tokio::test(flavor = "multi_thread")]
async fn bound_tokens_die_with_their_object() {
    let server = Server::start_with(&["--disable-scheduler"]);
    wait_for_default_account(&server, "default");
    server.ok(&["run", "p", "--image=busybox", "--restart=Never"]);
    let token = create_token(
        &server,
        &[
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "p",
        ],
    );
    let pod_uid = server.get_json(&["get", "pod", "p"])["metadata"]["uid"].clone();
    let c = claims(&token);
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "p");
    assert_eq!(c["kubernetes.io"]["pod"]["uid"], pod_uid);
    let client = token_client(&server, &token).await;
    assert_eq!(
        identity(&client).await,
        Ok("system:serviceaccount:default:default".into())
    );
    server.ok(&["delete", "pod", "p", "--grace-period=0", "--force"]);
    assert_eq!(identity(&client).await, Err(401));

    server.ok(&["create", "secret", "generic", "s", "--from-literal=a=b"]);
    let token = create_token(
        &server,
        &[
            "default",
            "--bound-object-kind",
            "Secret",
            "--bound-object-name",
            "s",
        ],
    );
    assert_eq!(claims(&token)["kubernetes.io"]["secret"]["name"], "s");
    let client = token_client(&server, &token).await;
    assert!(identity(&client).await.is_ok());
    server.ok(&["delete", "secret", "s"]);
    assert_eq!(identity(&client).await, Err(401));

    let err = server.fails(&[
        "create",
        "token",
        "default",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "gone",
    ]);
    assert!(err.contains("pods \"gone\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_forged_tokens_are_refused() {
    use skiff_apiserver::auth::sa_token::{Claims, KubernetesClaim, Ref, SigningKey};
    let server = Server::start();
    wait_for_default_account(&server, "default");
    let sa = server.get_json(&["get", "serviceaccount", "default"]);
    let uid = sa["metadata"]["uid"].as_str().unwrap().to_string();
    let now = jiff::Timestamp::now().as_second();
    let claims = |exp: i64| Claims {
        aud: vec!["https://kubernetes.default.svc.cluster.local".into()],
        exp,
        iat: exp - 3600,
        iss: "https://kubernetes.default.svc.cluster.local".into(),
        jti: "test".into(),
        kubernetes: KubernetesClaim {
            namespace: "default".into(),
            serviceaccount: Ref {
                name: "default".into(),
                uid: uid.clone(),
            },
            ..Default::default()
        },
        nbf: exp - 3600,
        sub: "system:serviceaccount:default:default".into(),
    };
    // The server's own key (kept in its pki dir): a valid token works, an expired one not.
    let key = SigningKey::ensure(&server.data_dir.path().join("server/tls")).unwrap();
    let valid = key.sign(&claims(now + 600)).unwrap();
    assert!(identity(&token_client(&server, &valid).await).await.is_ok());
    let expired = key.sign(&claims(now - 600)).unwrap();
    assert_eq!(
        identity(&token_client(&server, &expired).await).await,
        Err(401)
    );
    // Signed by another key.
    let stranger = tempfile::tempdir().unwrap();
    let forged = SigningKey::ensure(stranger.path())
        .unwrap()
        .sign(&claims(now + 600))
        .unwrap();
    assert_eq!(
        identity(&token_client(&server, &forged).await).await,
        Err(401)
    );
    // A real token with its payload swapped for another account.
    let real = create_token(&server, &["default"]);
    let mut other = claims(now + 600);
    other.sub = "system:serviceaccount:kube-system:default".into();
    other.kubernetes.namespace = "kube-system".into();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&other).unwrap());
    let parts: Vec<&str> = real.split('.').collect();
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_eq!(
        identity(&token_client(&server, &tampered).await).await,
        Err(401)
    );
    assert_eq!(
        identity(&token_client(&server, "garbage").await).await,
        Err(401)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_documents_verify_issued_tokens() {
    let server = Server::start_with(&["--service-account-issuer", "https://issuer.example"]);
    wait_for_default_account(&server, "default");
    let config: Value =
        serde_json::from_str(&server.ok(&["get", "--raw", "/.well-known/openid-configuration"]))
            .unwrap();
    assert_eq!(config["issuer"], "https://issuer.example");
    assert_eq!(config["jwks_uri"], "https://issuer.example/openid/v1/jwks");
    let jwks: Value =
        serde_json::from_str(&server.ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["alg"], "ES256");

    let token = create_token(&server, &["default"]);
    assert_eq!(claims(&token)["iss"], "https://issuer.example");
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], jwk["kid"]);
    // Verify the signature with nothing but the published JWK.
    let d = |s: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.as_str().unwrap())
            .unwrap()
    };
    let mut point = vec![4u8];
    point.extend(d(&jwk["x"]));
    point.extend(d(&jwk["y"]));
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    let dot = token.rfind('.').unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token[dot + 1..])
        .unwrap();
    key.verify(&token.as_bytes()[..dot], &sig)
        .expect("the JWKS verifies an issued token");
    // The issuer and audience came from the flags, and such tokens still authenticate.
    assert_eq!(
        identity(&token_client(&server, &token).await).await,
        Ok("system:serviceaccount:default:default".into())
    );
}

fn skiff(server: &Server, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skiff {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_tokens_authenticate_until_they_expire() {
    let server = Server::start_with(&["--token", "abcdef.0123456789abcdef"]);
    let ca = std::fs::read_to_string(server.data_dir.path().join("server/tls/ca.crt")).unwrap();
    let hash = skiff_runtime::join::ca_hash(&ca);
    let file = server.join_token_file();
    assert_eq!(file.trim(), format!("K10{hash}::abcdef.0123456789abcdef"));
    let client = token_client(&server, "abcdef.0123456789abcdef").await;
    assert_eq!(
        identity(&client).await,
        Ok("system:bootstrap:abcdef".into())
    );
    assert_eq!(
        identity(&token_client(&server, "abcdef.0123456789abcdee").await).await,
        Err(401)
    );

    // `skiff token create` prints a full join token whose hash is the CA's.
    let created = skiff(&server, &["token", "create", "--ttl", "3s"]);
    let created = created.trim();
    let (prefix, bare) = created.split_once("::").unwrap();
    assert_eq!(prefix, format!("K10{hash}"));
    let id = bare.split('.').next().unwrap().to_string();
    let listed = skiff(&server, &["token", "list"]);
    assert!(
        listed.contains(bare) && listed.contains("abcdef.0123456789abcdef"),
        "{listed}"
    );
    let short = token_client(&server, bare).await;
    assert_eq!(identity(&short).await, Ok(format!("system:bootstrap:{id}")));
    // Expired: refused, then deleted by the token cleaner.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(identity(&short).await, Err(401));
    eventually(Duration::from_secs(20), "expired token deleted", || {
        !server
            .kubectl(&[
                "get",
                "secret",
                "-n",
                "kube-system",
                &format!("bootstrap-token-{id}"),
            ])
            .status
            .success()
    });
    // The server's own token never expires and stays.
    assert!(server
        .kubectl(&[
            "get",
            "secret",
            "-n",
            "kube-system",
            "bootstrap-token-abcdef"
        ])
        .status
        .success());
    skiff(&server, &["token", "delete", "abcdef"]);
    assert_eq!(identity(&client).await, Err(401));
}

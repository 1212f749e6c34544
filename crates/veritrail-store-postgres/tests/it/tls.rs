//! TLS to the database, against a real cluster serving a certificate of a throw-away CA:
//! `sslmode=require` connects over verified TLS (the server sees `ssl = true`), a certificate of
//! an untrusted CA is refused, and plain connections stay as they were.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use veritrail_store::Store;
use veritrail_store_postgres::{PgAlertStore, PgStore};
use veritrail_test_support::postgres::{ClusterOptions, PgCluster};
use veritrail_test_support::tls::TestPki;

use crate::test_keys;

/// The certificate and key where the cluster's user may read them (the key private to it).
fn server_files(pki: &TestPki, dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    if unsafe_is_root() {
        let status = Command::new("chown").arg("postgres:postgres").arg(&cert).arg(&key).status().unwrap();
        assert!(status.success(), "chown to the postgres user");
    }
    (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned())
}

fn unsafe_is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_connects_over_verified_tls() {
    let pki = TestPki::generate();
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = server_files(&pki, files.path());
    let options = ClusterOptions {
        settings: format!(
            "{}\nssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n",
            ClusterOptions::default().settings
        ),
        ..ClusterOptions::default()
    };
    let cluster = tokio::task::spawn_blocking(move || PgCluster::start(&options)).await.unwrap().unwrap();
    cluster.create_database("vt").unwrap();
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let base = format!("postgres://postgres@localhost:{}/vt", cluster.port());
    let ca = ca.to_string_lossy();

    // Verified TLS, by tokio-postgres's and by libpq's spelling of the mode.
    for url in
        [format!("{base}?sslmode=require&sslrootcert={ca}"), format!("{base}?sslmode=verify-full&sslrootcert={ca}")]
    {
        let store = PgStore::connect(&url, test_keys()).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        store.tenants().await.unwrap();
        PgAlertStore::connect(&url).await.unwrap();
        let encrypted = cluster
            .execute("vt", "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'veritrail'")
            .unwrap();
        assert_ne!(encrypted.trim(), "0", "the server sees TLS connections: {encrypted}");
        store.shutdown().await.unwrap();
    }

    // Refused: a CA that did not sign the server's certificate, or a name it was not issued for.
    let stranger = TestPki::generate();
    let other_ca = files.path().join("other-ca.pem");
    std::fs::write(&other_ca, &stranger.ca_pem).unwrap();
    let refused = [
        format!("{base}?sslmode=require&sslrootcert={}", other_ca.to_string_lossy()),
        format!("{base}?sslmode=require"), // the system's CAs only
        format!("{base}?sslmode=require&sslrootcert=/nonexistent/ca.pem"),
    ];
    for url in refused {
        let result = PgStore::connect(&url, test_keys()).await;
        assert!(result.is_err(), "{url} connected");
    }

    // Without sslmode=require: plain TCP, as before.
    let store = PgStore::connect(&base, test_keys()).await.unwrap();
    store.tenants().await.unwrap();
    let plain = cluster
        .execute("vt", "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE NOT ssl AND application_name = 'veritrail'")
        .unwrap();
    assert_ne!(plain.trim(), "0", "{plain}");
    store.shutdown().await.unwrap();
}

//! A throw-away PKI made with the `openssl` command line at test time: a root CA, a TSA
//! certificate (critical extendedKeyUsage timeStamping) and `openssl ts -reply` answering our
//! requests. Tests never skip: without `openssl` they fail and say so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The key type of a PKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048.
    Rsa,
    /// ECDSA on P-256.
    EcP256,
}

/// A CA, a TSA certificate signed by it, and an `openssl ts` configuration using them.
pub struct Pki {
    dir: tempfile::TempDir,
    pub kind: KeyKind,
}

/// Runs `openssl` with `args` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output =
        Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
            panic!("these tests need the `openssl` command line tool (apt-get install openssl): {e}")
        });
    assert!(output.status.success(), "openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    output.stdout
}

const CONFIG: &str = r#"
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused

[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ tsa_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ server_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth

[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = .
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/ca.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
other_policies = 1.3.6.1.4.1.99999.2
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:500
clock_precision_digits = PRECISION
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"#;

impl Pki {
    /// A new PKI of `kind`; `precision` is the number of fraction digits in genTime.
    pub fn new(kind: KeyKind, precision: u8) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::write(path.join("openssl.cnf"), CONFIG.replace("PRECISION", &precision.to_string())).unwrap();
        std::fs::write(path.join("tsaserial"), "01\n").unwrap();
        let pki = Pki { dir, kind };
        pki.new_key("ca.key");
        let ca = "req -config openssl.cnf -new -x509 -key ca.key -out ca.pem -days 3650 -extensions ca_ext -sha256";
        pki.run(&format!("{ca} -subj"), &["/O=Veritrail Test/CN=Test Root CA"]);
        pki.issue("tsa", "/O=Veritrail Test/CN=Test TSA", "tsa_ext");
        pki
    }

    /// `openssl <command>` (split on spaces) followed by `more` as they are.
    fn run(&self, command: &str, more: &[&str]) -> Vec<u8> {
        let mut args: Vec<&str> = command.split_whitespace().collect();
        args.extend_from_slice(more);
        openssl(self.dir.path(), &args)
    }

    fn new_key(&self, file: &str) {
        let algorithm = match self.kind {
            KeyKind::Rsa => "-algorithm RSA -pkeyopt rsa_keygen_bits:2048",
            KeyKind::EcP256 => "-algorithm EC -pkeyopt ec_paramgen_curve:P-256",
        };
        self.run(&format!("genpkey {algorithm} -out {file}"), &[]);
    }

    /// Issues `<name>.pem` / `<name>.key` signed by the CA, with the extensions of `section`.
    pub fn issue(&self, name: &str, subject: &str, section: &str) {
        self.new_key(&format!("{name}.key"));
        self.run(&format!("req -config openssl.cnf -new -key {name}.key -out {name}.csr -subj"), &[subject]);
        self.run(
            &format!(
                "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
                 -extfile openssl.cnf -extensions {section} -out {name}.pem"
            ),
            &[],
        );
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.pem")).unwrap()
    }

    /// `openssl ts -reply` to a DER request: a DER `TimeStampResp`.
    pub fn reply(&self, query: &[u8]) -> Vec<u8> {
        std::fs::write(self.path("query.tsq"), query).unwrap();
        self.run("ts -reply -config openssl.cnf -queryfile query.tsq -out reply.tsr", &[]);
        std::fs::read(self.path("reply.tsr")).unwrap()
    }

    /// The token (`ContentInfo`) of a response.
    pub fn token_of(&self, response: &[u8]) -> Vec<u8> {
        std::fs::write(self.path("in.tsr"), response).unwrap();
        self.run("ts -reply -in in.tsr -token_out -out token.der", &[]);
        std::fs::read(self.path("token.der")).unwrap()
    }

    /// `openssl ts -query` of `message` with the given digest (`-sha256`, `-sha1`, ...).
    pub fn openssl_query(&self, message: &[u8], digest: &str) -> Vec<u8> {
        std::fs::write(self.path("message.bin"), message).unwrap();
        self.run(&format!("ts -query -data message.bin {digest} -cert -out openssl.tsq"), &[]);
        std::fs::read(self.path("openssl.tsq")).unwrap()
    }

    /// What `openssl ts -query -text` says of a DER request.
    pub fn describe_query(&self, query: &[u8]) -> String {
        std::fs::write(self.path("describe.tsq"), query).unwrap();
        String::from_utf8(self.run("ts -query -in describe.tsq -text", &[])).unwrap()
    }

    /// Re-signs the TSTInfo of `token` with the certificate `<name>.pem` using `openssl cms`
    /// (with an ESS signing-certificate-v2 attribute, as a TSA would): a token that is perfectly
    /// formed except for who signed it.
    pub fn resign_token(&self, token: &[u8], name: &str) -> Vec<u8> {
        std::fs::write(self.path("resign-in.der"), token).unwrap();
        self.run("cms -verify -inform DER -in resign-in.der -noverify -binary -out tstinfo.der", &[]);
        self.run(
            &format!(
                "cms -sign -binary -nodetach -nosmimecap -cades -md sha256 -in tstinfo.der \
                 -econtent_type 1.2.840.113549.1.9.16.1.4 -signer {name}.pem -inkey {name}.key \
                 -outform DER -out resigned.der"
            ),
            &[],
        );
        std::fs::read(self.path("resigned.der")).unwrap()
    }
}

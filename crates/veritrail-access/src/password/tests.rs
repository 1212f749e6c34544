use super::*;

const FAST: PasswordParams = PasswordParams::FAST_INSECURE;

#[test]
fn hash_then_verify() {
    let phc = hash_password_with("correct horse battery staple", &FAST).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
    assert!(verify_password("correct horse battery staple", &phc));
    assert!(!verify_password("correct horse battery stapl", &phc));
    assert!(!verify_password("", &phc));
}

#[test]
fn salts_are_random() {
    let a = hash_password_with("same password here", &FAST).unwrap();
    let b = hash_password_with("same password here", &FAST).unwrap();
    assert_ne!(a, b);
    assert!(verify_password("same password here", &a) && verify_password("same password here", &b));
}

#[test]
fn default_parameters_are_argons() {
    assert_eq!(PasswordParams::default(), PasswordParams { memory_kib: 19456, iterations: 2, parallelism: 1 });
    let phc = hash_password("a default-cost password").unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(verify_password("a default-cost password", &phc));
    assert!(!needs_rehash(&phc, &PasswordParams::DEFAULT));
    assert!(needs_rehash(&phc, &FAST));
}

#[test]
fn garbage_never_verifies_nor_panics() {
    let good = hash_password_with("a good password", &FAST).unwrap();
    let truncated = &good[..good.len() - 5];
    let other_alg = good.replace("argon2id", "argon2i");
    let other_version = good.replace("v=19", "v=16");
    let huge_memory = good.replace("m=8,", "m=4194304,");
    let huge_time = good.replace("t=1,", "t=4294967295,");
    let zero_parallel = good.replace("p=1$", "p=0$");
    let long = format!("{good}{}", "A".repeat(600));
    let cases = [
        "",
        "$",
        "$$$$$",
        "plaintext",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$",
        "$argon2id$v=19$m=8,t=1,p=1$!!!!$!!!!",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        truncated,
        &other_alg,
        &other_version,
        &huge_memory,
        &huge_time,
        &zero_parallel,
        &long,
        "$argon2id$v=19$m=8,t=1,p=1$\u{0}\u{ffff}$é",
    ];
    for phc in cases {
        assert!(!verify_password("a good password", phc), "{phc}");
    }
    assert!(!verify_password(&"x".repeat(MAX_PASSWORD_BYTES + 1), &good));
    assert!(needs_rehash("garbage", &FAST));
}

#[test]
fn policy() {
    assert!(check_password_policy("twelve chars").is_ok());
    assert!(check_password_policy(&"ü".repeat(12)).is_ok(), "characters, not bytes");
    assert!(check_password_policy(&"x".repeat(MAX_PASSWORD_BYTES)).is_ok());

    let short = check_password_policy("eleven char").unwrap_err();
    assert_eq!(short, PasswordError::TooShort { chars: 11, min: 12 });
    assert_eq!(short.code(), "password_too_short");
    assert_eq!(short.to_string(), "password: 11 characters, fewer than the 12 required");

    let long = check_password_policy(&"x".repeat(MAX_PASSWORD_BYTES + 1)).unwrap_err();
    assert_eq!(long.code(), "password_too_long");
    assert_eq!(long.to_string(), "password: 1025 bytes, more than the 1024 allowed");

    assert_eq!(check_password_policy(&" ".repeat(20)).unwrap_err(), PasswordError::Blank);
}

#[test]
fn messages_never_contain_the_password() {
    let secret = "hunter2";
    let error = check_password_policy(secret).unwrap_err();
    assert!(!error.to_string().contains(secret) && !format!("{error:?}").contains(secret));
    let too_long = format!("{secret}{}", "y".repeat(MAX_PASSWORD_BYTES));
    let error = hash_password_with(&too_long, &FAST).unwrap_err();
    assert!(!error.to_string().contains(secret) && !format!("{error:?}").contains(secret));
}

#[test]
fn parameters_are_bounded() {
    let bad = [
        PasswordParams { memory_kib: 7, iterations: 1, parallelism: 1 },
        PasswordParams { memory_kib: 8, iterations: 0, parallelism: 1 },
        PasswordParams { memory_kib: 8, iterations: 1, parallelism: 0 },
        PasswordParams { memory_kib: 8, iterations: 1, parallelism: 2 },
        PasswordParams { memory_kib: PasswordParams::MAX_MEMORY_KIB + 1, iterations: 1, parallelism: 1 },
        PasswordParams { memory_kib: 8, iterations: PasswordParams::MAX_ITERATIONS + 1, parallelism: 1 },
    ];
    for params in bad {
        let error = hash_password_with("whatever password", &params).unwrap_err();
        assert_eq!(error.code(), "password_params_invalid", "{params:?}: {error}");
    }
}

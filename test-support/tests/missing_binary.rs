//! Without redis-server on PATH the harness says what to install instead of failing obscurely.
//! (Alone in its own test binary: it changes PATH for the whole process.)

#[test]
fn a_missing_redis_server_is_a_clear_error() {
    // SAFETY-free on edition 2021; no other test runs in this binary.
    std::env::set_var("PATH", "/nonexistent");
    let err = test_support::RedisServer::start().unwrap_err();
    assert!(matches!(
        err,
        test_support::HarnessError::NotInstalled { .. }
    ));
    let text = err.to_string();
    assert!(text.contains("apt-get install redis-server"), "{text}");
}

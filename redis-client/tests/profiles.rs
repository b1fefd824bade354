//! Profile files on disk, chosen by argument, by REDIS_CONFIG / REDIS_PROFILE, or from
//! ./redis.toml, connecting to real servers. One test: it changes the environment and the
//! working directory, which the whole process shares.

use redis_client::prelude::*;
use redis_client::{load_profile, Mode};
use test_support::{RedisServer, SentinelSet, MASTER_NAME};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_found_chosen_and_connect() {
    let a = RedisServer::start().unwrap();
    let b = RedisServer::builder().password("pw-b").start().unwrap();
    let set = SentinelSet::builder()
        .replicas(1)
        .sentinels(1)
        .quorum(1)
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis.toml");
    std::fs::write(
        &file,
        format!(
            r#"
default_profile = "a"

[profiles.a]
url = "redis://{a}/1"
client_name = "from-profile"

[profiles.b]
url = "redis://{b}"
password_env = "PROFILES_TEST_PASSWORD"

[profiles.ha]
sentinels = ["{s}"]
master_name = "{MASTER_NAME}"
"#,
            a = a.addr(),
            b = b.addr(),
            s = set.sentinel_addrs()[0],
        ),
    )
    .unwrap();

    // By argument, falling back to default_profile.
    let (config, source) = load_profile(Some(&file), None).unwrap();
    assert_eq!(
        (source.profile.as_str(), source.profile_from),
        ("a", "default_profile")
    );
    assert_eq!(source.file_from, "argument");
    let c = Client::connect(config).await.unwrap();
    c.set("k", "in-db-1").await.unwrap();
    // The key went to database 1, not 0.
    let mut in_db = a.admin().unwrap();
    in_db.cmd(&["SELECT", "1"]).unwrap();
    assert_eq!(
        in_db.cmd(&["GET", "k"]).unwrap(),
        redis_client::Value::BulkString("in-db-1".into())
    );
    in_db.cmd(&["SELECT", "0"]).unwrap();
    assert_eq!(
        in_db.cmd(&["EXISTS", "k"]).unwrap(),
        redis_client::Value::Integer(0)
    );
    let list = a.admin().unwrap().cmd_string(&["CLIENT", "LIST"]).unwrap();
    assert!(
        list.contains("name=from-profile") && list.contains("db=1"),
        "{list}"
    );

    // REDIS_CONFIG and REDIS_PROFILE, with the password from the environment.
    std::env::set_var("REDIS_CONFIG", &file);
    std::env::set_var("REDIS_PROFILE", "b");
    std::env::set_var("PROFILES_TEST_PASSWORD", "pw-b");
    let (config, source) = load_profile(None, None).unwrap();
    assert_eq!(
        (source.file_from, source.profile_from),
        ("REDIS_CONFIG", "REDIS_PROFILE")
    );
    let c = Client::connect(config).await.unwrap();
    assert_eq!(c.ping().await.unwrap(), "PONG");
    // A name given explicitly beats the environment.
    let c = Client::from_profile(Some("ha")).await.unwrap();
    assert_eq!(c.mode(), Mode::Sentinel);
    c.set("via", "sentinel").await.unwrap();
    // A wrong password from the environment is an authentication error, stated once.
    std::env::set_var("PROFILES_TEST_PASSWORD", "wrong");
    let err = Client::from_profile(None).await.unwrap_err();
    assert!(err.to_string().contains("authentication"), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");

    // ./redis.toml when nothing else says.
    std::env::remove_var("REDIS_CONFIG");
    std::env::remove_var("REDIS_PROFILE");
    let here = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let found = load_profile(None, Some("a"));
    let empty = tempfile::tempdir().unwrap();
    std::env::set_current_dir(empty.path()).unwrap();
    let missing = load_profile(None, None);
    std::env::set_current_dir(here).unwrap();
    let (_, source) = found.unwrap();
    assert_eq!(source.file_from, "./redis.toml");
    let err = missing.unwrap_err().to_string();
    assert!(
        err.contains("REDIS_CONFIG") && err.contains("redis.toml"),
        "{err}"
    );
}

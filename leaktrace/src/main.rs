//! leaktrace: finds the call stacks that acquire resources and never release
//! them, with eBPF. Everything is in the library (`cmd::main`).

fn main() -> std::process::ExitCode {
    leaktrace::cmd::main()
}
